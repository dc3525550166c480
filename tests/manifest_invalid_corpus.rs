//! The corpus of invalid manifests (`tests/fixtures/invalid/`): every one is rejected, with exactly
//! the problems `expected.txt` lists (document, field path and YAML line), and nothing panics.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use orchestra::core::manifest;
use orchestra::core::scheme::Scheme;

const CORPUS: &str = "tests/fixtures/invalid";

/// (document label, field path) → line (`None` for JSON), per file.
type Problems = BTreeMap<(String, String), Option<usize>>;

fn expected() -> BTreeMap<String, Problems> {
    let text = fs::read_to_string(Path::new(CORPUS).join("expected.txt")).expect("expected.txt");
    let mut expected: BTreeMap<String, Problems> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let [file, document, path, line] = columns[..] else {
            panic!("malformed line in expected.txt: {line:?}");
        };
        let line = (line != "-").then(|| line.parse().expect("a line number"));
        expected
            .entry(file.to_owned())
            .or_default()
            .insert((document.to_owned(), path.to_owned()), line);
    }
    expected
}

fn actual(text: &str, scheme: &Scheme) -> Problems {
    let mut problems = Problems::new();
    for document in manifest::parse(text) {
        match document {
            Err(error) => {
                problems
                    .entry((error.document.to_string(), "<document>".to_owned()))
                    .or_insert(error.position.map(|p| p.line));
            }
            Ok(document) => {
                if let Err(error) = scheme.decode(&document) {
                    assert!(!error.problems.is_empty(), "an error with no problem");
                    for problem in error.problems {
                        let path = problem.error.field.to_string();
                        let path = if path.is_empty() {
                            "<document>".to_owned()
                        } else {
                            path
                        };
                        problems
                            .entry((document.label(), path))
                            .or_insert(problem.position.map(|p| p.line));
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn every_invalid_manifest_is_rejected_with_its_field_paths() {
    let expected = expected();
    let scheme = Scheme::default();
    let mut files = BTreeSet::new();
    for entry in fs::read_dir(CORPUS).expect("the corpus folder") {
        let path = entry.expect("a folder entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "expected.txt" {
            continue;
        }
        let text = fs::read_to_string(&path).expect("a readable manifest");
        let problems = actual(&text, &scheme);
        let wanted = expected
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is not listed in expected.txt"));
        assert_eq!(
            &problems, wanted,
            "{name}: problems differ from expected.txt"
        );
        files.insert(name);
    }
    assert!(
        files.len() >= 40,
        "the corpus holds {} manifests",
        files.len()
    );
    let listed: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(listed, files, "expected.txt lists files that do not exist");
}

#[test]
fn every_problem_becomes_a_kubernetes_status() {
    let scheme = Scheme::default();
    let text = fs::read_to_string(Path::new(CORPUS).join("many-problems-at-once.yaml")).unwrap();
    let document = &manifest::parse_all(&text).unwrap()[0];
    let status = scheme
        .decode(document)
        .unwrap_err()
        .to_status_error()
        .to_status();
    assert_eq!(status.code, Some(422));
    assert_eq!(status.reason.as_deref(), Some("Invalid"));
    let details = status.details.unwrap();
    assert_eq!(details.kind.as_deref(), Some("Deployment"));
    assert_eq!(details.name.as_deref(), Some("web"));
    let causes = details.causes.unwrap();
    assert_eq!(causes.len(), 4);
    assert!(
        causes
            .iter()
            .all(|c| c.field.is_some() && c.reason.is_some())
    );
    assert!(
        status
            .message
            .unwrap()
            .starts_with("Deployment.apps \"web\" is invalid: [")
    );

    let text = fs::read_to_string(Path::new(CORPUS).join("unknown-top-level.yaml")).unwrap();
    let document = &manifest::parse_all(&text).unwrap()[0];
    let status = scheme
        .decode(document)
        .unwrap_err()
        .to_status_error()
        .to_status();
    assert_eq!(status.code, Some(400));
    assert_eq!(status.reason.as_deref(), Some("BadRequest"));
}
