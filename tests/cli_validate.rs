//! `orchestra validate`, run as a user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn orchestra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestra"))
        .args(args)
        .output()
        .expect("the orchestra binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn the_voting_app_is_valid() {
    let output = orchestra(&["validate", "-f", "../shared/fixtures/voting-app/"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout(&output), "");
    assert!(String::from_utf8_lossy(&output.stderr).contains("9 objects checked: 9 valid"));
}

#[test]
fn defaulted_objects_are_printed_as_json() {
    let output = orchestra(&[
        "validate",
        "-f",
        "../shared/fixtures/voting-app/",
        "-o",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 9);
    let vote = items
        .iter()
        .find(|i| i["kind"] == "Deployment" && i["metadata"]["name"] == "vote")
        .unwrap();
    assert_eq!(vote["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(vote["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(vote["spec"]["progressDeadlineSeconds"], 600);
    let pod = &vote["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
    let service = items
        .iter()
        .find(|i| i["kind"] == "Service" && i["metadata"]["name"] == "db")
        .unwrap();
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["sessionAffinity"], "None");
}

#[test]
fn problems_are_printed_one_per_line_with_file_document_kind_name_and_path() {
    let file = "tests/fixtures/invalid/many-problems-at-once.yaml";
    let output = orchestra(&["validate", "-f", file]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        lines[0],
        format!(
            "{file}:0: Deployment/web: spec.replicas: Invalid value: -3: must be greater than or equal to 0 (line 6, column 3)"
        )
    );
    assert!(lines[3].starts_with(&format!(
        "{file}:0: Deployment/web: spec.template.spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\""
    )));
}

#[test]
fn the_whole_invalid_corpus_fails_and_the_valid_app_beside_it_does_not_hide_it() {
    let output = orchestra(&[
        "validate",
        "-f",
        "../shared/fixtures/voting-app/",
        "-f",
        "tests/fixtures/invalid/",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).lines().count() >= 90);
}

#[test]
fn missing_files_and_empty_input_are_usage_errors() {
    let output = orchestra(&["validate", "-f", "no/such/file.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no/such/file.yaml"));

    let output = orchestra(&["validate"]);
    assert_eq!(output.status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let output = orchestra(&["validate", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));

    let binary = dir.path().join("binary.yaml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let output = orchestra(&["validate", "-f", binary.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not UTF-8"));
}

#[test]
fn directories_are_read_recursively_only_with_dash_r() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("nested");
    std::fs::create_dir(&nested).unwrap();
    std::fs::write(
        nested.join("bad.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: BAD\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("good.yml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: good\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let top = dir.path().to_str().unwrap();
    assert_eq!(orchestra(&["validate", "-f", top]).status.code(), Some(0));
    assert_eq!(
        orchestra(&["validate", "-R", "-f", top]).status.code(),
        Some(1)
    );
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestra"))
        .args(["validate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"Bad\"}}",
        )
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).starts_with("-:0: ConfigMap/Bad: metadata.name: Invalid value"));
}
