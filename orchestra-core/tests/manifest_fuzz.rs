//! Fuzz-style properties: whatever text reaches the manifest decoder — arbitrary bytes, random
//! YAML-shaped token soup, real manifests with random edits — it returns documents or errors and
//! never panics, and every error it returns names a document and, for YAML, a position.

use orchestra_core::manifest;
use orchestra_core::scheme::Scheme;
use proptest::prelude::*;

/// Runs the whole decoding pipeline on `text`: parse, then strict decoding, defaulting and
/// validation of every document.
fn decode_everything(text: &str) {
    let scheme = Scheme::default();
    for document in manifest::parse(text) {
        match document {
            Ok(document) => {
                if let Err(error) = scheme.decode(&document) {
                    assert!(!error.problems.is_empty());
                    let _ = error.to_status_error().to_status();
                }
            }
            Err(error) => assert!(!error.message.is_empty()),
        }
    }
}

const TOKENS: [&str; 48] = [
    "apiVersion: ",
    "v1",
    "apps/v1",
    "kind: ",
    "Deployment",
    "Pod",
    "Service",
    "List",
    "items:",
    "metadata:",
    "name: ",
    "spec:",
    "containers:",
    "ports:",
    "- ",
    "  ",
    "    ",
    "\n",
    "---\n",
    "{",
    "}",
    "[",
    "]",
    ", ",
    ": ",
    "&a ",
    "*a",
    "<<: ",
    "!!str ",
    "!!int ",
    "!custom ",
    "\"",
    "'",
    "|\n",
    ">-\n",
    "# comment",
    "\t",
    "0x1F",
    "1e999",
    "-.inf",
    "yes",
    "~",
    "? ",
    "%YAML 1.2\n",
    "...\n",
    "\\u0000",
    "é",
    "9223372036854775808",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&TOKENS[..]), 0..120)
        .prop_map(|tokens| tokens.concat())
}

const FIXTURES: [&str; 3] = [
    include_str!("../../../shared/fixtures/voting-app/vote-deployment.yaml"),
    include_str!("../../../shared/fixtures/voting-app/result-service.yaml"),
    include_str!("../../../shared/fixtures/voting-app/db-deployment.yaml"),
];

#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn edited_fixture() -> impl Strategy<Value = String> {
    let edit = prop_oneof![
        (
            any::<usize>(),
            prop::sample::select(&TOKENS[..]).prop_map(str::to_owned)
        )
            .prop_map(|(at, text)| Edit::Insert(at, text)),
        (any::<usize>(), 0usize..16).prop_map(|(at, len)| Edit::Delete(at, len)),
        (any::<usize>(), 0usize..64).prop_map(|(at, len)| Edit::Duplicate(at, len)),
    ];
    (0..FIXTURES.len(), prop::collection::vec(edit, 1..8)).prop_map(|(index, edits)| {
        let mut text = FIXTURES[index].to_owned();
        for edit in edits {
            let clamp = |text: &String, at: usize| {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                at
            };
            match edit {
                Edit::Insert(at, token) => {
                    let at = clamp(&text, at);
                    text.insert_str(at, &token);
                }
                Edit::Delete(at, len) => {
                    let start = clamp(&text, at);
                    let end = clamp(&text, start + len);
                    text.replace_range(start..end.max(start), "");
                }
                Edit::Duplicate(at, len) => {
                    let start = clamp(&text, at);
                    let end = clamp(&text, start + len).max(start);
                    let copy = text[start..end].to_owned();
                    text.insert_str(end, &copy);
                }
            }
        }
        text
    })
}

/// The number of cases: `default`, or `PROPTEST_CASES` for a longer hunt.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        decode_everything(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        decode_everything(&text);
    }

    #[test]
    fn yaml_shaped_token_soup_never_panics(text in token_soup()) {
        decode_everything(&text);
    }

    #[test]
    fn edited_real_manifests_never_panic(text in edited_fixture()) {
        decode_everything(&text);
    }
}

#[test]
fn hostile_inputs_are_refused_cleanly() {
    let deep_flow = format!("a: {}{}", "[".repeat(50_000), "]".repeat(50_000));
    let deep_block: String = (0..5_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let aliases = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{aliases}]\n"));
    }
    let deep_json = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let huge_number = format!(
        "apiVersion: v1\nkind: Pod\nspec:\n  priority: 1{}\n",
        "0".repeat(400)
    );
    for text in [deep_flow, deep_block, laughs, deep_json, huge_number] {
        decode_everything(&text);
    }
}
