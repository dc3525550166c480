//! `orchestra validate`: offline checking of manifests.
//!
//! Each `-f` names a file, a directory (its `.yaml`, `.yml` and `.json` files, in name order; with
//! `-R`, its subdirectories' too) or `-` for standard input, as `kubectl -f` does. Every object is
//! decoded strictly, defaulted and validated with the built-in scheme, and every problem is printed
//! on its own line:
//!
//! ```text
//! <file>:<doc>: <kind>/<name>: <field path>: <message> (line L, column C)
//! ```
//!
//! where `<doc>` is the index of the document in its file, from 0 (`<doc>/items[i]` for the items
//! of a `List`). The exit status is 0 when every object is valid, 1 when any is invalid, and 2 on
//! usage or I/O errors (a file that cannot be read, no objects at all).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use orchestra_core::manifest::{self, Position};
use orchestra_core::scheme::{Decoded, Scheme};
use serde_json::{Value, json};

/// Exit status when every object is valid.
const VALID: u8 = 0;
/// Exit status when an object is invalid.
const INVALID: u8 = 1;
/// Exit status on usage or I/O errors.
const USAGE: u8 = 2;

/// Arguments of `orchestra validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// A manifest file, a directory of manifests, or `-` for standard input (repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE-OR-DIR"
    )]
    files: Vec<PathBuf>,

    /// Also read the subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    recursive: bool,

    /// Print the defaulted objects instead of only the problems.
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<Output>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// The defaulted objects as JSON (one object, or a `List` of several).
    Json,
}

/// Where manifests are read from.
enum Source {
    File(PathBuf),
    Stdin,
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "-".to_owned(),
        }
    }

    fn read(&self) -> Result<String, String> {
        let bytes = match self {
            Source::File(path) => fs::read(path).map_err(|error| error.to_string())?,
            Source::Stdin => {
                let mut bytes = Vec::new();
                io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(|error| error.to_string())?;
                bytes
            }
        };
        String::from_utf8(bytes).map_err(|error| {
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                error.utf8_error().valid_up_to()
            )
        })
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The manifest files a `-f` argument names.
fn expand(path: &Path, recursive: bool, top: bool, out: &mut Vec<Source>) -> Result<(), String> {
    if path.as_os_str() == "-" {
        out.push(Source::Stdin);
        return Ok(());
    }
    let metadata = fs::metadata(path).map_err(|error| format!("{}: {error}", path.display()))?;
    if !metadata.is_dir() {
        out.push(Source::File(path.to_owned()));
        return Ok(());
    }
    if !top && !recursive {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|error| format!("{}: {error}", path.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            expand(&entry, recursive, false, out)?;
        } else if is_manifest(&entry) {
            out.push(Source::File(entry));
        }
    }
    Ok(())
}

fn at(position: Option<Position>) -> String {
    position.map(|p| format!(" ({p})")).unwrap_or_default()
}

/// Runs `orchestra validate`.
pub(crate) fn run(args: &ValidateArgs) -> ExitCode {
    let mut status = VALID;
    let mut sources = Vec::new();
    for path in &args.files {
        if let Err(message) = expand(path, args.recursive, true, &mut sources) {
            eprintln!("error: {message}");
            status = USAGE;
        }
    }
    let scheme = Scheme::default();
    let mut problems = Vec::new();
    let mut objects: Vec<Decoded> = Vec::new();
    let mut object_count = 0;
    let mut invalid_count = 0;
    for source in &sources {
        let name = source.name();
        let text = match source.read() {
            Ok(text) => text,
            Err(message) => {
                eprintln!("error: {name}: {message}");
                status = USAGE;
                continue;
            }
        };
        for document in manifest::parse(&text) {
            object_count += 1;
            let document = match document {
                Ok(document) => document,
                Err(error) => {
                    invalid_count += 1;
                    problems.push(format!(
                        "{name}:{}: ?/?: <document>: {}{}",
                        error.document,
                        error.message,
                        at(error.position)
                    ));
                    continue;
                }
            };
            match scheme.decode(&document) {
                Ok(decoded) => objects.push(decoded),
                Err(error) => {
                    invalid_count += 1;
                    let kind = error.kind.as_deref().unwrap_or("?");
                    let object = error.name.as_deref().unwrap_or("?");
                    for problem in &error.problems {
                        let field = problem.error.field.to_string();
                        let field = if field.is_empty() {
                            "<document>".to_owned()
                        } else {
                            field
                        };
                        problems.push(format!(
                            "{name}:{}: {kind}/{object}: {field}: {}{}",
                            document.label(),
                            problem.error.body(),
                            at(problem.position)
                        ));
                    }
                }
            }
        }
    }
    let mut stdout = io::stdout().lock();
    let write_result = if args.output == Some(Output::Json) {
        for problem in &problems {
            eprintln!("{problem}");
        }
        let mut items: Vec<Value> = objects
            .iter()
            .filter_map(|decoded| serde_json::to_value(&decoded.object).ok())
            .collect();
        let output = if items.len() == 1 {
            items.remove(0)
        } else {
            json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
        };
        serde_json::to_string_pretty(&output)
            .map_err(io::Error::other)
            .and_then(|text| writeln!(stdout, "{text}"))
    } else {
        problems
            .iter()
            .try_for_each(|problem| writeln!(stdout, "{problem}"))
    };
    if let Err(error) = write_result {
        eprintln!("error: cannot write the output: {error}");
        return ExitCode::from(USAGE);
    }
    if status == USAGE {
        return ExitCode::from(USAGE);
    }
    if object_count == 0 {
        eprintln!("error: no objects found in the given manifests");
        return ExitCode::from(USAGE);
    }
    eprintln!(
        "{} objects checked: {} valid, {invalid_count} invalid",
        object_count,
        object_count - invalid_count
    );
    ExitCode::from(if invalid_count > 0 { INVALID } else { VALID })
}
