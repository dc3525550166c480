//! `orchestra store backup` and `orchestra store restore`, run as a user runs them, against a
//! store that a process (this test) has open and keeps writing to.

use std::process::{Command, Output};

use bytes::Bytes;
use orchestra::core::store::Store;
use orchestra::store::embedded::{EmbeddedOptions, EmbeddedStore};

fn orchestra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestra"))
        .args(args)
        .output()
        .expect("the orchestra binary runs")
}

#[tokio::test]
async fn an_online_backup_restores_every_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let backup = root.path().join("backup.img");
    let restored = root.path().join("restored");
    let store = EmbeddedStore::open(&data, EmbeddedOptions::default()).unwrap();
    for i in 0..200 {
        store
            .put(&format!("/k/{i:03}"), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let acknowledged = store.current_revision().await.unwrap();

    // The store is open (and locked) in this process: the backup reads it anyway.
    let output = orchestra(&[
        "store",
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--to",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    store.put("/after", Bytes::from_static(b"1")).await.unwrap();

    let output = orchestra(&[
        "store",
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let copy = EmbeddedStore::open(&restored, EmbeddedOptions::default()).unwrap();
    assert!(copy.current_revision().await.unwrap() >= acknowledged);
    for i in [0, 99, 199] {
        let kv = copy
            .get(&format!("/k/{i:03}"))
            .await
            .unwrap()
            .expect("a backed-up key");
        assert_eq!(kv.value, Bytes::from(i.to_string()));
    }
    assert!(copy.get("/after").await.unwrap().is_none());
    drop(copy);

    // Restoring over a store is refused; so is a damaged backup; so is a missing folder.
    let again = orchestra(&[
        "store",
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    let mut bytes = std::fs::read(&backup).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&backup, bytes).unwrap();
    let damaged = orchestra(&[
        "store",
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data-dir",
        root.path().join("other").to_str().unwrap(),
    ]);
    assert_eq!(damaged.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&damaged.stderr).contains("damaged"));
    let missing = orchestra(&[
        "store",
        "backup",
        "--data-dir",
        "/no/such/folder",
        "--to",
        "/tmp/x.img",
    ]);
    assert_eq!(missing.status.code(), Some(2));
}
