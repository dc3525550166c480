//! Manifests: YAML and JSON text into documents, as `kubectl` reads them.
//!
//! A manifest is a stream of objects written as Kubernetes writes them (`apiVersion`, `kind`,
//! `metadata`, `spec`): one YAML document or several separated by `---` lines, a JSON object or a
//! stream of them, and objects of `kind: List` (or a typed list such as `PodList`) whose `items`
//! are objects in turn. [`parse`] turns the text into one [`Document`] per object, each a JSON value
//! with the index of the document it came from and where every value was written, so that later
//! errors (strict decoding, validation) can point at a line and column. JSON objects get positions
//! (and duplicate-key detection) by a second reading of their text as YAML, used only when it
//! gives exactly the value the JSON reader gave.
//!
//! This module only reads syntax. Deciding what kind an object is, strict decoding into its type,
//! defaulting and validation belong to [`crate::scheme`].
//!
//! Like `kubectl`, the text is JSON when its first non-blank character is `{` and YAML otherwise;
//! YAML follows Kubernetes' reading (YAML 1.1 scalars, see [`yaml`]). A syntax error in one YAML
//! document does not hide the documents after it.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::manifest;
//! use orchestra_core::validation::field::Path;
//!
//! let text = "\
//! apiVersion: v1
//! kind: ConfigMap
//! metadata:
//!   name: settings
//! ---
//! apiVersion: v1
//! kind: List
//! items:
//! - apiVersion: v1
//!   kind: Namespace
//!   metadata:
//!     name: shop
//! ";
//! let documents = manifest::parse_all(text)?;
//! assert_eq!(documents.len(), 2);
//! assert_eq!(documents[1].value["kind"], "Namespace");
//! assert_eq!(documents[1].label(), "1/items[0]");
//! let name = documents[1].position_of(&Path::new("metadata").child("name")).unwrap();
//! assert_eq!((name.line, name.column), (12, 5));
//! # Ok::<(), manifest::SyntaxError>(())
//! ```

mod encode;
mod position;
pub mod yaml;

pub use encode::{encode_yaml, encode_yaml_stream};

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

pub use position::Position;
use position::PositionTree;

use crate::validation::field::{Path, Segment};

/// How a manifest was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// YAML (one document or several separated by `---`).
    Yaml,
    /// JSON (one object or a stream of them).
    Json,
}

/// One object of a manifest, as JSON, with where it came from.
#[derive(Clone, Debug)]
pub struct Document {
    /// Index of the document in the stream, from 0, counting documents that hold something.
    pub index: usize,
    /// When the object is an item of a `List`, its index in `items`.
    pub item: Option<usize>,
    /// The object.
    pub value: Value,
    /// How the manifest was written.
    pub format: Format,
    /// Keys written twice in the same mapping, relative to this object (the later value won).
    pub duplicates: Vec<Path>,
    positions: Option<Arc<PositionTree>>,
    base: Path,
}

impl Document {
    /// An object given as JSON rather than read from a manifest (an API request's body): index 0,
    /// no positions.
    pub fn from_value(value: Value) -> Document {
        Document {
            index: 0,
            item: None,
            value,
            format: Format::Json,
            duplicates: Vec::new(),
            positions: None,
            base: Path::root(),
        }
    }

    /// Where `path` (relative to this object) was written, for YAML documents: the position of
    /// the field's key, or of its nearest written ancestor when the field is absent.
    pub fn position_of(&self, path: &Path) -> Option<Position> {
        self.positions
            .as_ref()
            .map(|tree| tree.find(&self.base.join(path)))
    }

    /// `"3"` for the fourth document, `"3/items[1]"` for the second item of a `List` there.
    pub fn label(&self) -> String {
        match self.item {
            Some(item) => format!("{}/items[{item}]", self.index),
            None => self.index.to_string(),
        }
    }

    /// The object's `apiVersion` and `kind`, when present as strings.
    pub fn type_meta(&self) -> (Option<&str>, Option<&str>) {
        (
            self.value.get("apiVersion").and_then(Value::as_str),
            self.value.get("kind").and_then(Value::as_str),
        )
    }
}

/// A manifest document that is not well-formed YAML or JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("document {document}: {message}{}", position.map(|p| format!(" at {p}")).unwrap_or_default())]
pub struct SyntaxError {
    /// Index of the document in the stream (as [`Document::index`]).
    pub document: usize,
    /// Where the problem is, when known.
    pub position: Option<Position>,
    /// What the problem is.
    pub message: String,
}

/// Reads a manifest into its objects, in order: one entry per document (or per item of a `List`),
/// the documents that cannot be read as errors. Reading goes on after a bad YAML document; a JSON
/// stream stops at its first error.
pub fn parse(text: &str) -> Vec<Result<Document, SyntaxError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        parse_json(text)
    } else {
        parse_yaml(text)
    }
}

/// Reads a manifest into its objects, failing at the first document that cannot be read.
pub fn parse_all(text: &str) -> Result<Vec<Document>, SyntaxError> {
    parse(text).into_iter().collect()
}

fn parse_yaml(text: &str) -> Vec<Result<Document, SyntaxError>> {
    let mut out = Vec::new();
    for (index, document) in yaml::parse_stream(text).into_iter().enumerate() {
        match document {
            Ok(document) => {
                let positions = Arc::new(document.positions);
                let whole = Document {
                    index,
                    item: None,
                    value: document.value,
                    format: Format::Yaml,
                    duplicates: document
                        .duplicates
                        .into_iter()
                        .map(|(path, _)| path)
                        .collect(),
                    positions: Some(positions),
                    base: Path::root(),
                };
                expand_list(whole, &mut out);
            }
            Err(error) => out.push(Err(SyntaxError {
                document: index,
                position: error.position,
                message: error.message,
            })),
        }
    }
    out
}

fn parse_json(text: &str) -> Vec<Result<Document, SyntaxError>> {
    let mut out = Vec::new();
    let mut index = 0;
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut start = 0;
    while let Some(value) = stream.next() {
        let end = stream.byte_offset();
        match value {
            Ok(Value::Null) => {}
            Ok(value) => {
                let (positions, duplicates) = match json_positions(text, start, end, &value) {
                    Some(read) => (
                        Some(Arc::new(read.positions)),
                        read.duplicates.into_iter().map(|(path, _)| path).collect(),
                    ),
                    None => (None, Vec::new()),
                };
                let whole = Document {
                    index,
                    item: None,
                    value,
                    format: Format::Json,
                    duplicates,
                    positions,
                    base: Path::root(),
                };
                expand_list(whole, &mut out);
                index += 1;
            }
            Err(error) => {
                out.push(Err(SyntaxError {
                    document: index,
                    position: Some(Position {
                        line: error.line(),
                        column: error.column(),
                    }),
                    message: without_position(&error.to_string()).to_owned(),
                }));
                break;
            }
        }
        start = end;
    }
    out
}

/// Where each value of the JSON object at `text[start..end]` was written, and its keys written
/// twice, read by the YAML reader (JSON is YAML); `None` when that reading does not give exactly
/// the value `serde_json` read, so that a position is never given for the wrong value.
fn json_positions(
    text: &str,
    start: usize,
    end: usize,
    value: &Value,
) -> Option<yaml::YamlDocument> {
    let before = text.get(..start)?;
    let line_offset = before.matches('\n').count();
    let column_offset = before
        .rsplit('\n')
        .next()
        .map_or(0, |line| line.chars().count());
    let object = format!("{}{}", " ".repeat(column_offset), text.get(start..end)?);
    yaml::parse_single(&object, line_offset).filter(|read| &read.value == value)
}

/// A `serde_json` message without its trailing ` at line L column C` (the position is kept apart).
fn without_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |end| &message[..end])
}

/// Whether a kind names a list of objects (`List`, `PodList`, ...).
fn is_list_kind(kind: &str) -> bool {
    kind.ends_with("List")
}

/// Replaces a list object by its items (typed lists give their items the list's `apiVersion` and
/// item kind when missing), or passes any other object through.
fn expand_list(document: Document, out: &mut Vec<Result<Document, SyntaxError>>) {
    let kind = document.value.get("kind").and_then(Value::as_str);
    let is_list =
        kind.is_some_and(is_list_kind) && document.value.get("items").is_some_and(Value::is_array);
    if !is_list {
        out.push(Ok(document));
        return;
    }
    let list_kind = kind.unwrap_or_default().to_owned();
    let item_kind = list_kind
        .strip_suffix("List")
        .unwrap_or_default()
        .to_owned();
    let api_version = document.value.get("apiVersion").cloned();
    let Document {
        index,
        value,
        format,
        duplicates,
        positions,
        ..
    } = document;
    let items = match value {
        Value::Object(mut fields) => match fields.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    for (i, mut item) in items.into_iter().enumerate() {
        if !item_kind.is_empty()
            && let Value::Object(fields) = &mut item
        {
            if !fields.contains_key("kind") {
                fields.insert("kind".into(), Value::String(item_kind.clone()));
            }
            if let Some(api_version) = &api_version
                && !fields.contains_key("apiVersion")
            {
                fields.insert("apiVersion".into(), api_version.clone());
            }
        }
        let base = Path::new("items").index(i);
        let item_duplicates = duplicates
            .iter()
            .filter_map(|path| {
                path.segments()
                    .strip_prefix(base.segments())
                    .map(|rest| Path::from(rest.to_vec()))
            })
            .collect();
        out.push(Ok(Document {
            index,
            item: Some(i),
            value: item,
            format,
            duplicates: item_duplicates,
            positions: positions.clone(),
            base,
        }));
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        })
    }
}

/// The path a `serde_path_to_error` path names, as a field path.
pub(crate) fn path_from_serde(path: &serde_path_to_error::Path) -> Path {
    let mut segments = Vec::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => segments.push(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => segments.push(Segment::Field(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => {
                segments.push(Segment::Field(variant.clone()));
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    Path::from(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_streams_are_read_object_by_object() {
        let documents = parse_all(r#"{"kind": "A"} {"kind": "B"}"#).unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1].index, 1);
        assert_eq!(documents[1].format, Format::Json);
        assert_eq!(
            documents[1].position_of(&Path::new("kind")),
            Some(Position {
                line: 1,
                column: 16
            })
        );
    }

    #[test]
    fn json_objects_have_positions_and_duplicates() {
        let text =
            "{\"kind\": \"A\"}\n  {\n  \"kind\": \"B\",\n  \"spec\": {\"a\": 1, \"a\": 2}\n}";
        let documents = parse_all(text).unwrap();
        let spec = Path::new("spec").child("a");
        assert_eq!(
            documents[1].position_of(&spec),
            Some(Position {
                line: 4,
                column: 20
            })
        );
        assert_eq!(documents[1].duplicates, vec![spec]);
        assert_eq!(
            documents[0].position_of(&Path::new("kind")),
            Some(Position { line: 1, column: 2 })
        );
    }

    #[test]
    fn json_errors_have_positions() {
        let error = parse_all("{\"kind\": \n  \"A\",,}").unwrap_err();
        assert_eq!(error.position.map(|p| p.line), Some(2));
    }

    #[test]
    fn typed_lists_give_items_their_kind() {
        let documents =
            parse_all("apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a}\n").unwrap();
        assert_eq!(
            documents[0].value,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}})
        );
    }

    #[test]
    fn list_items_keep_their_duplicates() {
        let documents = parse_all(
            "apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata: {name: a, name: b}\n",
        )
        .unwrap();
        assert_eq!(
            documents[0].duplicates,
            vec![Path::new("metadata").child("name")]
        );
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        assert_eq!(
            parse_all("\u{feff}a: 1\n").unwrap()[0].value,
            json!({"a": 1})
        );
    }

    #[test]
    fn empty_input_has_no_documents() {
        assert!(parse_all("").unwrap().is_empty());
        assert!(parse_all("# nothing\n---\n---\n").unwrap().is_empty());
    }
}
