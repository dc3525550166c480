//! The `hello_server` example, run as the node agent runs it: a real process, real HTTP.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the server with `args` on a free loopback port; the process and its address.
fn start(args: &[&str], env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let mut child = Command::new(support::hello_server())
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    // Keep reading what it says later, so that its writes to stderr never fail.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let address = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, address)
}

/// One HTTP/1.1 request: the status code and the body.
fn request(address: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn terminate(child: &Child) {
    let status = Command::new("/bin/sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn says_which_pod_and_version_answered() {
    let (mut child, address) = start(&["--app-version", "3"], &[("POD_NAME", "web-7")]);
    assert_eq!(
        request(address, "GET", "/"),
        (200, "hello from web-7 (version 3)\n".to_owned())
    );
    assert_eq!(request(address, "GET", "/nope").0, 404);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn probes_fail_when_told_and_recover() {
    let (mut child, address) = start(&["--ready-after", "0.3"], &[]);
    assert_eq!(
        request(address, "GET", "/readyz"),
        (503, "starting\n".to_owned())
    );
    assert_eq!(request(address, "GET", "/healthz").0, 200);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(request(address, "GET", "/readyz").0, 200);
    assert_eq!(request(address, "POST", "/fail/healthz").0, 200);
    assert_eq!(request(address, "GET", "/healthz").0, 500);
    assert_eq!(request(address, "POST", "/fail/readyz").0, 200);
    assert_eq!(request(address, "GET", "/readyz").0, 503);
    assert_eq!(request(address, "POST", "/recover/healthz").0, 200);
    assert_eq!(request(address, "GET", "/healthz").0, 200);
    assert_eq!(request(address, "POST", "/fail/startupz").0, 404);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn ends_on_sigterm_after_its_delay_or_crashes_on_request() {
    let (mut child, _) = start(&["--term-delay", "0.5"], &[]);
    let asked = Instant::now();
    terminate(&child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(asked.elapsed() >= Duration::from_millis(500));

    let (mut child, address) = start(&[], &[]);
    assert_eq!(request(address, "POST", "/exit?code=7").0, 200);
    assert_eq!(child.wait().unwrap().code(), Some(7));

    let (mut child, _) = start(&["--ignore-sigterm"], &[]);
    terminate(&child);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it should have ignored SIGTERM"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
