//! YAML streams to JSON values, with the position of every value.
//!
//! The stream is first split into documents on `---` lines, as `kubectl` splits it, so that a
//! syntax error in one document does not hide the others; each document is then parsed with
//! saphyr's event parser and built into a [`serde_json::Value`] and a tree of the positions of its values.
//!
//! Plain scalars are resolved the way Kubernetes' YAML library (go-yaml v2, YAML 1.1) resolves
//! them, so that a manifest means here what it means to `kubectl`: `yes`/`no`/`on`/`off` are
//! booleans, `0x1F` and `0o17` are integers, `1e3` is a number, integral floats become integers.
//! Anchors, aliases and merge keys (`<<`) are supported, with a budget on alias expansion;
//! duplicate keys are recorded for strict decoding; nesting is limited to [`MAX_DEPTH`] levels.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Map, Number, Value};

use super::position::{Position, PositionTree};
use crate::validation::field::{Path, Segment};

/// Deepest nesting of sequences and mappings a document may have.
pub const MAX_DEPTH: usize = 200;

/// Most values a document may hold once its aliases are expanded.
pub const MAX_NODES: usize = 500_000;

/// A YAML document as JSON, with where each value was written.
#[derive(Debug)]
pub(crate) struct YamlDocument {
    pub(crate) value: Value,
    pub(crate) positions: PositionTree,
    pub(crate) duplicates: Vec<(Path, Position)>,
}

/// A document that could not be read, and where.
#[derive(Debug)]
pub(crate) struct YamlError {
    pub(crate) position: Option<Position>,
    pub(crate) message: String,
}

/// One `---`-separated part of a stream: the line it starts on (0-based) and its text.
struct Chunk<'a> {
    first_line: usize,
    text: &'a str,
    separator_error: Option<YamlError>,
}

/// Splits a stream into documents on lines that start with `---`, as Kubernetes' `YAMLReader`
/// does; what follows `---` on its line must be blank or a comment.
fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut first_line = 0;
    let mut offset = 0;
    for (line_number, line) in text.split_inclusive('\n').enumerate() {
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            let separator_error = (!rest.is_empty() && !rest.starts_with('#')).then(|| YamlError {
                position: Some(Position {
                    line: line_number + 1,
                    column: 4,
                }),
                message: format!("invalid YAML document separator: {rest}"),
            });
            chunks.push(Chunk {
                first_line,
                text: &text[start..offset],
                separator_error: None,
            });
            if let Some(error) = separator_error {
                chunks.push(Chunk {
                    first_line: line_number,
                    text: "",
                    separator_error: Some(error),
                });
            }
            start = offset + line.len();
            first_line = line_number + 1;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        first_line,
        text: &text[start..],
        separator_error: None,
    });
    chunks
}

/// Parses a YAML stream: one entry per non-empty document, in order.
pub(crate) fn parse_stream(text: &str) -> Vec<Result<YamlDocument, YamlError>> {
    let mut documents = Vec::new();
    for chunk in split(text) {
        if let Some(error) = chunk.separator_error {
            documents.push(Err(error));
            continue;
        }
        let mut builder = Builder::new(chunk.first_line);
        match builder.run(chunk.text) {
            Ok(()) => documents.extend(builder.documents.into_iter().map(Ok)),
            Err(error) => {
                documents.extend(builder.documents.into_iter().map(Ok));
                documents.push(Err(error));
            }
        }
    }
    documents
}

/// Reads one piece of text that holds a single document (a JSON object, say) whose first line
/// is line `first_line + 1` of the whole text; `None` when it is not exactly one YAML document.
pub(crate) fn parse_single(text: &str, first_line: usize) -> Option<YamlDocument> {
    let mut builder = Builder::new(first_line);
    builder.run(text).ok()?;
    let mut documents = builder.documents.into_iter();
    let document = documents.next()?;
    documents.next().is_none().then_some(document)
}

enum Frame {
    Sequence {
        position: Position,
        anchor: usize,
        items: Vec<Value>,
        positions: Vec<PositionTree>,
    },
    Mapping {
        position: Position,
        anchor: usize,
        entries: Map<String, Value>,
        positions: Vec<(String, Position, PositionTree)>,
        key: Option<PendingKey>,
        merges: Vec<(Value, PositionTree)>,
    },
}

struct PendingKey {
    name: String,
    position: Position,
    merge: bool,
}

/// The key, as a JSON object key, that a scalar or alias becomes (as Kubernetes' YAML-to-JSON
/// conversion turns non-string keys into strings).
fn key_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some("null".to_owned()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn node_count(value: &Value) -> usize {
    let mut count = 0;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        count += 1;
        match value {
            Value::Array(items) => pending.extend(items),
            Value::Object(entries) => pending.extend(entries.values()),
            _ => {}
        }
    }
    count
}

struct Builder {
    line_offset: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, PositionTree, usize)>,
    documents: Vec<YamlDocument>,
    duplicates: Vec<(Path, Position)>,
    nodes: usize,
}

impl Builder {
    fn new(line_offset: usize) -> Builder {
        Builder {
            line_offset,
            stack: Vec::new(),
            anchors: HashMap::new(),
            documents: Vec::new(),
            duplicates: Vec::new(),
            nodes: 0,
        }
    }

    fn position(&self, span: &Span) -> Position {
        Position {
            line: span.start.line() + self.line_offset,
            column: span.start.col() + 1,
        }
    }

    fn error(&self, position: Position, message: impl Into<String>) -> YamlError {
        YamlError {
            position: Some(position),
            message: message.into(),
        }
    }

    fn scan_error(&self, error: &ScanError) -> YamlError {
        let marker = error.marker();
        YamlError {
            position: Some(Position {
                line: marker.line() + self.line_offset,
                column: marker.col() + 1,
            }),
            message: error.info().to_owned(),
        }
    }

    fn run(&mut self, text: &str) -> Result<(), YamlError> {
        let mut parser = Parser::new_from_str(text);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|error| self.scan_error(&error))?;
            let position = self.position(&span);
            match event {
                Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
                Event::DocumentStart(_) => {
                    self.stack.clear();
                    self.anchors.clear();
                    self.duplicates.clear();
                    self.nodes = 0;
                }
                Event::DocumentEnd => {}
                Event::Alias(id) => {
                    let Some((value, positions, count)) = self.anchors.get(&id) else {
                        return Err(self.error(position, "unknown anchor"));
                    };
                    let (value, positions, count) = (value.clone(), positions.clone(), *count);
                    self.count(count, position)?;
                    self.push(value, positions, position, false)?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    self.count(1, position)?;
                    let value = resolve_scalar(&text, style, tag.as_deref())
                        .map_err(|message| self.error(position, message))?;
                    let positions = PositionTree::Scalar(position);
                    if anchor > 0 {
                        self.anchors
                            .insert(anchor, (value.clone(), positions.clone(), 1));
                    }
                    let merge = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                    self.push(value, positions, position, merge)?;
                }
                Event::SequenceStart(anchor, _) => {
                    self.count(1, position)?;
                    self.open(
                        Frame::Sequence {
                            position,
                            anchor,
                            items: Vec::new(),
                            positions: Vec::new(),
                        },
                        position,
                    )?;
                }
                Event::MappingStart(anchor, _) => {
                    self.count(1, position)?;
                    self.open(
                        Frame::Mapping {
                            position,
                            anchor,
                            entries: Map::new(),
                            positions: Vec::new(),
                            key: None,
                            merges: Vec::new(),
                        },
                        position,
                    )?;
                }
                Event::SequenceEnd | Event::MappingEnd => self.close(position)?,
            }
        }
        Ok(())
    }

    fn count(&mut self, nodes: usize, position: Position) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            return Err(self.error(
                position,
                format!(
                    "document holds more than {MAX_NODES} values once its aliases are expanded"
                ),
            ));
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, position: Position) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(
                position,
                format!("document nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        if let Some(Frame::Mapping { key: None, .. }) = self.stack.last() {
            return Err(self.error(position, "complex mapping keys are not supported"));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self, position: Position) -> Result<(), YamlError> {
        let Some(frame) = self.stack.pop() else {
            return Err(self.error(position, "unbalanced end of collection"));
        };
        let (value, positions, anchor) = match frame {
            Frame::Sequence {
                position,
                anchor,
                items,
                positions,
            } => (
                Value::Array(items),
                PositionTree::Sequence(position, positions),
                anchor,
            ),
            Frame::Mapping {
                position,
                anchor,
                mut entries,
                mut positions,
                merges,
                ..
            } => {
                apply_merges(&mut entries, &mut positions, merges);
                (
                    Value::Object(entries),
                    PositionTree::Mapping(position, positions),
                    anchor,
                )
            }
        };
        if anchor > 0 {
            let count = node_count(&value);
            self.anchors
                .insert(anchor, (value.clone(), positions.clone(), count));
        }
        let start = positions.position();
        self.push(value, positions, start, false)
    }

    /// The path from the document's root to the value being built at the top of the stack.
    fn path(&self) -> Path {
        let mut segments = Vec::new();
        for frame in &self.stack {
            match frame {
                Frame::Sequence { items, .. } => segments.push(Segment::Index(items.len())),
                Frame::Mapping { key: Some(key), .. } => {
                    segments.push(Segment::Field(key.name.clone()));
                }
                Frame::Mapping { key: None, .. } => {}
            }
        }
        Path::from(segments)
    }

    fn push(
        &mut self,
        value: Value,
        positions: PositionTree,
        position: Position,
        merge: bool,
    ) -> Result<(), YamlError> {
        // A key written twice is recorded with its path (which ends with the pending key); the
        // path is only built then, as it costs an allocation per level.
        if let Some(Frame::Mapping {
            entries,
            key: Some(pending),
            ..
        }) = self.stack.last()
            && !pending.merge
            && entries.contains_key(&pending.name)
        {
            let duplicate = (self.path(), pending.position);
            self.duplicates.push(duplicate);
        }
        let Some(top) = self.stack.last_mut() else {
            if !value.is_null() {
                self.documents.push(YamlDocument {
                    value,
                    positions,
                    duplicates: std::mem::take(&mut self.duplicates),
                });
            }
            return Ok(());
        };
        match top {
            Frame::Sequence {
                items,
                positions: item_positions,
                ..
            } => {
                items.push(value);
                item_positions.push(positions);
            }
            Frame::Mapping {
                entries,
                positions: entry_positions,
                key,
                merges,
                ..
            } => match key.take() {
                None => {
                    let Some(name) = key_string(&value) else {
                        return Err(YamlError {
                            position: Some(position),
                            message: "complex mapping keys are not supported".into(),
                        });
                    };
                    *key = Some(PendingKey {
                        name,
                        position,
                        merge,
                    });
                }
                Some(pending) if pending.merge => {
                    let sources = match value {
                        Value::Object(_) => vec![(value, positions)],
                        Value::Array(items) => {
                            let item_positions = match positions {
                                PositionTree::Sequence(_, item_positions) => item_positions,
                                _ => Vec::new(),
                            };
                            let mut sources = Vec::new();
                            for (item, item_position) in items.into_iter().zip(item_positions) {
                                if !item.is_object() {
                                    return Err(YamlError {
                                        position: Some(item_position.position()),
                                        message:
                                            "merge key (<<) needs a mapping or a list of mappings"
                                                .into(),
                                    });
                                }
                                sources.push((item, item_position));
                            }
                            sources
                        }
                        _ => {
                            return Err(YamlError {
                                position: Some(position),
                                message: "merge key (<<) needs a mapping or a list of mappings"
                                    .into(),
                            });
                        }
                    };
                    merges.extend(sources);
                }
                Some(pending) => {
                    if entries.contains_key(&pending.name) {
                        entry_positions.retain(|(name, _, _)| name != &pending.name);
                    }
                    entries.insert(pending.name.clone(), value);
                    entry_positions.push((pending.name, pending.position, positions));
                }
            },
        }
        Ok(())
    }
}

/// Merges `<<` sources into a mapping: keys written in the mapping win, then earlier sources.
fn apply_merges(
    entries: &mut Map<String, Value>,
    positions: &mut Vec<(String, Position, PositionTree)>,
    merges: Vec<(Value, PositionTree)>,
) {
    for (source, source_positions) in merges {
        let Value::Object(source) = source else {
            continue;
        };
        let source_positions = match source_positions {
            PositionTree::Mapping(_, source_positions) => source_positions,
            _ => Vec::new(),
        };
        for (name, value) in source {
            if entries.contains_key(&name) {
                continue;
            }
            if let Some(entry) = source_positions.iter().find(|(key, _, _)| key == &name) {
                positions.push(entry.clone());
            }
            entries.insert(name, value);
        }
    }
}

const CORE_SCHEMA: &str = "tag:yaml.org,2002:";

/// Resolves a scalar to JSON as go-yaml v2 does (YAML 1.1 booleans, base prefixes, integral floats
/// as integers); quoted and block scalars are strings; core tags force their type.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag
        && tag.handle == CORE_SCHEMA
    {
        return match tag.suffix.as_str() {
            "str" | "binary" | "timestamp" => Ok(Value::String(text.to_owned())),
            "null" => Ok(Value::Null),
            "bool" => resolve_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| format!("cannot read {text:?} as !!bool")),
            "int" => resolve_int(text).ok_or_else(|| format!("cannot read {text:?} as !!int")),
            "float" => resolve_int(text)
                .or_else(|| resolve_float(text).ok().flatten())
                .ok_or_else(|| format!("cannot read {text:?} as !!float")),
            "map" | "seq" | "set" | "omap" | "pairs" => {
                Err(format!("!!{} cannot tag a scalar", tag.suffix))
            }
            other => Err(format!("unknown tag !!{other}")),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = resolve_bool(text) {
        return Ok(Value::Bool(b));
    }
    let starts_numeric = text
        .as_bytes()
        .first()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.'));
    if starts_numeric {
        if let Some(number) = resolve_int(text) {
            return Ok(number);
        }
        if let Some(number) = resolve_float(text)? {
            return Ok(number);
        }
    }
    Ok(Value::String(text.to_owned()))
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

/// An integer as Go's `strconv.ParseInt(s, 0, 64)` (then `ParseUint`) reads it after go-yaml drops
/// underscores: optional sign, `0x`, `0o`, `0b` or leading-`0` octal prefixes.
fn resolve_int(text: &str) -> Option<Value> {
    let plain: String = text.chars().filter(|&c| c != '_').collect();
    let (negative, digits) = match plain.as_bytes().first() {
        Some(b'-') => (true, &plain[1..]),
        Some(b'+') => (false, &plain[1..]),
        _ => (false, plain.as_str()),
    };
    let (radix, digits) = if let Some(rest) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, rest)
    } else if let Some(rest) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, rest)
    } else if let Some(rest) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, rest)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if negative {
        let value = i64::try_from(magnitude)
            .ok()
            .map(|m| -m)
            .or_else(|| (magnitude == 1u128 << 63).then_some(i64::MIN))?;
        Some(Value::Number(value.into()))
    } else if let Ok(value) = i64::try_from(magnitude) {
        Some(Value::Number(value.into()))
    } else {
        u64::try_from(magnitude)
            .ok()
            .map(|value| Value::Number(value.into()))
    }
}

/// A float as go-yaml v2 reads it (`[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`), integral
/// values becoming integers as in Kubernetes' YAML-to-JSON conversion; infinities and NaN have no
/// JSON form and are errors.
fn resolve_float(text: &str) -> Result<Option<Value>, String> {
    if matches!(
        text,
        ".nan"
            | ".NaN"
            | ".NAN"
            | ".inf"
            | ".Inf"
            | ".INF"
            | "+.inf"
            | "+.Inf"
            | "+.INF"
            | "-.inf"
            | "-.Inf"
            | "-.INF"
    ) {
        return Err(format!("{text} has no JSON representation"));
    }
    let plain: String = text.chars().filter(|&c| c != '_').collect();
    if !is_yaml_float(&plain) {
        return Ok(None);
    }
    let Ok(value) = plain.parse::<f64>() else {
        return Ok(None);
    };
    if !value.is_finite() {
        return Err(format!("{text} is too large for a number"));
    }
    if value.fract() == 0.0 && value.abs() < 9.2e18 {
        #[allow(clippy::cast_possible_truncation)]
        let integer = value as i64;
        return Ok(Some(Value::Number(integer.into())));
    }
    Ok(Number::from_f64(value).map(Value::Number))
}

fn is_yaml_float(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits_before = bytes[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += digits_before;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        let digits_after = bytes[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += digits_after;
        if digits_before == 0 && digits_after == 0 {
            return false;
        }
    } else if digits_before == 0 {
        return false;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exponent_digits = bytes[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exponent_digits == 0 {
            return false;
        }
        i += exponent_digits;
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> YamlDocument {
        let mut documents = parse_stream(text);
        assert_eq!(documents.len(), 1, "{text}");
        documents.remove(0).unwrap()
    }

    #[test]
    fn scalars_resolve_like_go_yaml() {
        let document = one(
            "a: yes\nb: off\nc: 0x1F\nd: 0o17\ne: 017\nf: 1e3\ng: 1.5\nh: '1'\ni: ~\nj: 1_000\nk: -7\nl: 1.0\nm: text\nnn: !!str 10\ny: 1\no: 18446744073709551615\n",
        );
        assert_eq!(
            document.value,
            json!({"a": true, "b": false, "c": 31, "d": 15, "e": 15, "f": 1000, "g": 1.5, "h": "1",
                   "i": null, "j": 1000, "k": -7, "l": 1, "m": "text", "nn": "10", "true": 1,
                   "o": 18_446_744_073_709_551_615_u64})
        );
    }

    #[test]
    fn documents_split_on_separator_lines() {
        let documents = parse_stream("a: 1\n---\n# only a comment\n---\nb: 2\n--- # next\nc: 3\n");
        let values: Vec<Value> = documents.into_iter().map(|d| d.unwrap().value).collect();
        assert_eq!(
            values,
            vec![json!({"a": 1}), json!({"b": 2}), json!({"c": 3})]
        );
    }

    #[test]
    fn bad_separator_is_an_error_but_later_documents_still_parse() {
        let documents = parse_stream("a: 1\n--- b: 2\nc: 3\n");
        assert_eq!(documents.len(), 3);
        assert!(documents[1].is_err());
        assert_eq!(documents[2].as_ref().unwrap().value, json!({"c": 3}));
    }

    #[test]
    fn positions_are_absolute_lines() {
        let document =
            parse_stream("a: 1\n---\nkind: Pod\nspec:\n  containers:\n  - name: x\n    image: y\n")
                .remove(1)
                .unwrap();
        let path = Path::new("spec")
            .child("containers")
            .index(0)
            .child("image");
        assert_eq!(
            document.positions.find(&path),
            Position { line: 7, column: 5 }
        );
        let missing = Path::new("spec")
            .child("containers")
            .index(0)
            .child("ports");
        assert_eq!(
            document.positions.find(&missing),
            Position { line: 6, column: 5 }
        );
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let error = parse_stream("a: 1\n---\nb: [1, 2\n").remove(1).unwrap_err();
        assert_eq!(error.position.map(|p| p.line), Some(4));
    }

    #[test]
    fn anchors_aliases_and_merges() {
        let document = one("base: &b {x: 1, z: 2}\nuse:\n  <<: *b\n  z: 3\nlist: [*b]\n");
        assert_eq!(
            document.value,
            json!({"base": {"x": 1, "z": 2}, "use": {"x": 1, "z": 3}, "list": [{"x": 1, "z": 2}]})
        );
    }

    #[test]
    fn duplicate_keys_are_recorded() {
        let document = one("a:\n  b: 1\n  b: 2\n");
        assert_eq!(document.value, json!({"a": {"b": 2}}));
        assert_eq!(document.duplicates.len(), 1);
        assert_eq!(document.duplicates[0].0.to_string(), "a.b");
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(parse_stream(&text).remove(0).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_stream(&text).iter().any(Result::is_err));
    }
}
