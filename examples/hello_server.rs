//! A small HTTP server to run as a pod: it says which pod and version answered, has liveness and
//! readiness endpoints, and can be told to fail them, so that tests and demos can exercise
//! probes, restarts, rollouts and services.
//!
//! ```text
//! cargo run --example hello_server -- --listen 127.0.0.1:8080 --pod-name web-1 --app-version 2
//! ```
//!
//! Run by the node agent, it takes its settings from the environment the pod gives it:
//! `POD_IP` and `PORT` (the address it listens on, default `127.0.0.1:8080`), `POD_NAME`,
//! `VERSION`.
//!
//! Endpoints:
//!
//! - `GET /`: `hello from <pod name> (version <version>)`;
//! - `GET /healthz`: 200 `ok`, or 500 once told to fail (liveness);
//! - `GET /readyz`: 200 `ready`, or 503 before `--ready-after` has passed or once told to fail
//!   (readiness);
//! - `POST /fail/healthz`, `POST /fail/readyz`: make that endpoint fail from now on;
//!   `POST /recover/healthz`, `POST /recover/readyz`: make it pass again;
//! - `POST /exit?code=N`: end the process with exit code `N` (default 1), as a crash.
//!
//! On SIGTERM it stops accepting connections, waits `--term-delay` seconds (a slow shutdown) and
//! exits 0; with `--ignore-sigterm` it carries on until killed. It prints the address it listens
//! on to stderr (`... listening on 127.0.0.1:8080`). `tests/hello_server.rs` runs the built binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;
use serde::Deserialize;
use tokio::time::Instant;

/// The server's settings.
#[derive(Debug, Parser)]
#[command(about = "A small HTTP server to run as a pod")]
struct Args {
    /// The address to listen on (default: `$POD_IP:$PORT`, each defaulting to 127.0.0.1 and
    /// 8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The pod name it answers with.
    #[arg(long, env = "POD_NAME", default_value = "hello")]
    pod_name: String,
    /// The version it answers with.
    #[arg(long, env = "VERSION", default_value = "1")]
    app_version: String,
    /// Not ready until this many seconds after the start.
    #[arg(long, default_value_t = 0.0)]
    ready_after: f64,
    /// Fail `/healthz` from the start.
    #[arg(long)]
    fail_healthz: bool,
    /// Fail `/readyz` from the start.
    #[arg(long)]
    fail_readyz: bool,
    /// Seconds to wait after SIGTERM before exiting.
    #[arg(long, default_value_t = 0.0)]
    term_delay: f64,
    /// Ignore SIGTERM (only SIGKILL ends it).
    #[arg(long)]
    ignore_sigterm: bool,
}

impl Args {
    fn listen_address(&self) -> Result<SocketAddr> {
        if let Some(address) = self.listen {
            return Ok(address);
        }
        let ip = std::env::var("POD_IP").unwrap_or_else(|_| "127.0.0.1".to_owned());
        let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
        format!("{ip}:{port}")
            .parse()
            .with_context(|| format!("POD_IP {ip:?} and PORT {port:?} make no address"))
    }
}

/// What the endpoints answer from.
#[derive(Debug)]
struct Hello {
    pod_name: String,
    version: String,
    ready_at: Instant,
    failing_healthz: AtomicBool,
    failing_readyz: AtomicBool,
}

impl Hello {
    fn new(args: &Args) -> Hello {
        Hello {
            pod_name: args.pod_name.clone(),
            version: args.app_version.clone(),
            ready_at: Instant::now() + Duration::from_secs_f64(args.ready_after.max(0.0)),
            failing_healthz: AtomicBool::new(args.fail_healthz),
            failing_readyz: AtomicBool::new(args.fail_readyz),
        }
    }

    fn probe(&self, name: &str) -> Option<&AtomicBool> {
        match name {
            "healthz" => Some(&self.failing_healthz),
            "readyz" => Some(&self.failing_readyz),
            _ => None,
        }
    }
}

/// The server's routes over `hello`.
fn router(hello: Arc<Hello>) -> Router {
    Router::new()
        .route("/", get(greet))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/fail/{probe}", post(fail))
        .route("/recover/{probe}", post(recover))
        .route("/exit", post(exit))
        .with_state(hello)
}

async fn greet(State(hello): State<Arc<Hello>>) -> String {
    format!(
        "hello from {} (version {})\n",
        hello.pod_name, hello.version
    )
}

async fn healthz(State(hello): State<Arc<Hello>>) -> (StatusCode, &'static str) {
    if hello.failing_healthz.load(Ordering::Relaxed) {
        (StatusCode::INTERNAL_SERVER_ERROR, "failing\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn readyz(State(hello): State<Arc<Hello>>) -> (StatusCode, &'static str) {
    if Instant::now() < hello.ready_at {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    } else if hello.failing_readyz.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn fail(
    State(hello): State<Arc<Hello>>,
    axum::extract::Path(probe): axum::extract::Path<String>,
) -> (StatusCode, String) {
    set_failing(&hello, &probe, true)
}

async fn recover(
    State(hello): State<Arc<Hello>>,
    axum::extract::Path(probe): axum::extract::Path<String>,
) -> (StatusCode, String) {
    set_failing(&hello, &probe, false)
}

fn set_failing(hello: &Hello, probe: &str, failing: bool) -> (StatusCode, String) {
    match hello.probe(probe) {
        Some(flag) => {
            flag.store(failing, Ordering::Relaxed);
            let now = if failing { "failing" } else { "passing" };
            (StatusCode::OK, format!("{probe} {now}\n"))
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("no probe {probe:?}: healthz or readyz\n"),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct ExitQuery {
    code: Option<i32>,
}

async fn exit(Query(query): Query<ExitQuery>) -> String {
    let code = query.code.unwrap_or(1);
    // Answer first, then end the process as a crash would.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::process::exit(code);
    });
    format!("exiting with {code}\n")
}

/// Resolves when the process should stop serving: on SIGTERM (unless ignored) or Ctrl-C. The
/// handlers are installed by the caller before it says it listens, so that a SIGTERM sent as
/// soon as it does is handled, never the default death by signal.
async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut interrupt: tokio::signal::unix::Signal,
    ignore_sigterm: bool,
) {
    loop {
        tokio::select! {
            _ = term.recv() => {
                if ignore_sigterm {
                    eprintln!("SIGTERM ignored");
                    continue;
                }
                eprintln!("SIGTERM: shutting down");
                return;
            }
            _ = interrupt.recv() => return,
        }
    }
}

async fn serve(args: Args) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let address = args.listen_address()?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    eprintln!(
        "{} (version {}) listening on {}",
        args.pod_name,
        args.app_version,
        listener.local_addr()?
    );
    let hello = Arc::new(Hello::new(&args));
    let ignore_sigterm = args.ignore_sigterm;
    axum::serve(listener, router(hello))
        .with_graceful_shutdown(shutdown_signal(term, interrupt, ignore_sigterm))
        .await?;
    tokio::time::sleep(Duration::from_secs_f64(args.term_delay.max(0.0))).await;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}
