//! The loopback pod network over a real state directory and real sockets.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};

use orchestra_core::pod_network::{NetworkError, PodNetwork, PodNetworkRequest};
use orchestra_net::loopback::{DEFAULT_RANGE, LoopbackNetwork};

fn request(id: &str) -> PodNetworkRequest {
    PodNetworkRequest {
        sandbox_id: id.to_owned(),
        pod_namespace: "default".to_owned(),
        pod_name: format!("web-{id}"),
        pod_uid: format!("uid-{id}"),
    }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

async fn attach(network: &LoopbackNetwork, id: &str) -> IpAddr {
    let status = network.attach(&request(id)).await.unwrap();
    assert_eq!(status.ips.len(), 1);
    assert_eq!(status.interface.as_deref(), Some("lo"));
    status.ips[0]
}

#[tokio::test]
async fn two_pods_get_distinct_addresses_and_bind_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let network = LoopbackNetwork::open(dir.path(), DEFAULT_RANGE).unwrap();
    assert_eq!(network.name(), "loopback");
    let a = attach(&network, "a").await;
    let b = attach(&network, "b").await;
    assert_eq!((a, b), (ip(127, 10, 0, 1), ip(127, 10, 0, 2)));

    // The first pod picks a free port; the second binds the very same port on its address.
    let first = TcpListener::bind((a, 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let second = TcpListener::bind((b, port)).unwrap();
    assert_eq!(second.local_addr().unwrap().port(), port);

    // Each answers on its own address.
    for (listener, address, word) in [(&first, a, b"a"), (&second, b, b"b")] {
        let mut client = TcpStream::connect((address, port)).unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        assert!(peer.ip().is_loopback());
        server.write_all(word).unwrap();
        let mut got = [0u8; 1];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, word);
    }
}

#[tokio::test]
async fn attach_is_idempotent_and_status_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let network = LoopbackNetwork::open(dir.path(), DEFAULT_RANGE).unwrap();
    let first = network.attach(&request("a")).await.unwrap();
    let again = network.attach(&request("a")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(network.status("a").await.unwrap(), Some(first));
    assert_eq!(network.status("other").await.unwrap(), None);
    assert_eq!(network.allocations().len(), 1);
    assert_eq!(
        fs::read_to_string(dir.path().join("127.10.0.1")).unwrap(),
        "a\n"
    );
}

#[tokio::test]
async fn detach_frees_and_the_address_is_reused_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let network = LoopbackNetwork::open(dir.path(), "127.20.0.0/29").unwrap();
    assert_eq!(attach(&network, "a").await, ip(127, 20, 0, 1));
    assert_eq!(attach(&network, "b").await, ip(127, 20, 0, 2));
    network.detach("a").await.unwrap();
    network.detach("a").await.unwrap();
    network.detach("never-attached").await.unwrap();
    assert_eq!(network.status("a").await.unwrap(), None);
    assert!(!dir.path().join("127.20.0.1").exists());

    // Not the freed .1 at once: the never-used ones first, then around again.
    assert_eq!(attach(&network, "c").await, ip(127, 20, 0, 3));
    for (id, last) in [("d", 4), ("e", 5), ("f", 6)] {
        assert_eq!(attach(&network, id).await, ip(127, 20, 0, last));
    }
    assert_eq!(attach(&network, "g").await, ip(127, 20, 0, 1));
}

#[tokio::test]
async fn allocations_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let network = LoopbackNetwork::open(dir.path(), "127.20.0.0/29").unwrap();
        attach(&network, "a").await;
        attach(&network, "b").await;
        network.detach("a").await.unwrap();
    }
    let network = LoopbackNetwork::open(dir.path(), "127.20.0.0/29").unwrap();
    assert_eq!(
        network.status("b").await.unwrap().map(|status| status.ips),
        Some(vec![ip(127, 20, 0, 2)])
    );
    assert_eq!(network.status("a").await.unwrap(), None);
    // Still round-robin after the last one handed out, never the running pod's .2.
    assert_eq!(attach(&network, "c").await, ip(127, 20, 0, 3));
    assert_eq!(attach(&network, "b").await, ip(127, 20, 0, 2));
}

#[tokio::test]
async fn a_full_range_is_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let network = LoopbackNetwork::open(dir.path(), "127.20.0.4/30").unwrap();
    assert_eq!(attach(&network, "a").await, ip(127, 20, 0, 5));
    assert_eq!(attach(&network, "b").await, ip(127, 20, 0, 6));
    assert_eq!(
        network.attach(&request("c")).await,
        Err(NetworkError::Exhausted {
            range: "127.20.0.4/30".to_owned()
        })
    );
    // Already attached sandboxes still get theirs; a release makes room.
    assert_eq!(attach(&network, "a").await, ip(127, 20, 0, 5));
    network.detach("a").await.unwrap();
    assert_eq!(attach(&network, "c").await, ip(127, 20, 0, 5));
}

#[tokio::test]
async fn concurrent_attaches_get_distinct_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let network = LoopbackNetwork::open(dir.path(), DEFAULT_RANGE).unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let network = network.clone();
            tokio::spawn(async move { network.attach(&request(&format!("p{n}"))).await })
        })
        .collect();
    let mut addresses = Vec::new();
    for task in tasks {
        addresses.push(task.await.unwrap().unwrap().ips[0]);
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 32);
}

#[test]
fn invalid_ranges_are_rejected_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for range in [
        "10.244.0.0/16",
        "127.0.0.0/8",
        "127.10.0.0/31",
        "127.10.0.1/16",
        "not a range",
    ] {
        match LoopbackNetwork::open(dir.path(), range) {
            Err(NetworkError::InvalidArgument { field, .. }) => assert_eq!(field, "range"),
            other => panic!("{range}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn invalid_sandbox_ids_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let network = LoopbackNetwork::open(dir.path(), DEFAULT_RANGE).unwrap();
    match network.attach(&request("")).await {
        Err(NetworkError::InvalidArgument { field, .. }) => assert_eq!(field, "sandbox_id"),
        other => panic!("{other:?}"),
    }
    assert!(network.allocations().is_empty());
}

#[tokio::test]
async fn a_corrupt_allocation_file_is_an_error_naming_it_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let network = LoopbackNetwork::open(dir.path(), DEFAULT_RANGE).unwrap();
        attach(&network, "a").await;
    }
    let file = dir.path().join("127.10.0.1");
    fs::write(&file, b"\xff\xfe").unwrap();
    match LoopbackNetwork::open(dir.path(), DEFAULT_RANGE) {
        Err(NetworkError::CorruptState { path, .. }) => assert_eq!(path, file),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&file).unwrap(), b"\xff\xfe");

    fs::write(&file, b"").unwrap();
    let error = LoopbackNetwork::open(dir.path(), DEFAULT_RANGE).unwrap_err();
    assert!(error.to_string().contains("127.10.0.1"), "{error}");
    assert_eq!(fs::read(&file).unwrap(), b"");
}

#[test]
fn two_files_claiming_one_sandbox_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("127.10.0.1"), "a\n").unwrap();
    fs::write(dir.path().join("127.10.0.2"), "a\n").unwrap();
    match LoopbackNetwork::open(dir.path(), DEFAULT_RANGE) {
        Err(NetworkError::CorruptState { path, .. }) => {
            assert_eq!(path, dir.path().join("127.10.0.2"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_corrupt_last_reserved_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("last_reserved_ip");
    fs::write(&file, "nonsense").unwrap();
    match LoopbackNetwork::open(dir.path(), DEFAULT_RANGE) {
        Err(NetworkError::CorruptState { path, .. }) => assert_eq!(path, file),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn allocations_outside_a_new_range_are_kept_until_detached() {
    let dir = tempfile::tempdir().unwrap();
    {
        let network = LoopbackNetwork::open(dir.path(), "127.20.0.0/24").unwrap();
        attach(&network, "old").await;
    }
    let network = LoopbackNetwork::open(dir.path(), "127.30.0.0/24").unwrap();
    assert_eq!(
        network
            .status("old")
            .await
            .unwrap()
            .map(|status| status.ips),
        Some(vec![ip(127, 20, 0, 1)])
    );
    assert_eq!(attach(&network, "new").await, ip(127, 30, 0, 1));
    network.detach("old").await.unwrap();
    assert!(!dir.path().join("127.20.0.1").exists());
}

#[tokio::test]
async fn the_state_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("var/lib/orchestra/network");
    let network = LoopbackNetwork::open(&nested, DEFAULT_RANGE).unwrap();
    assert_eq!(network.dir(), nested);
    attach(&network, "a").await;
    assert!(nested.join("127.10.0.1").is_file());
}
