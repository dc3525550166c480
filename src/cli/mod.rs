//! Command-line interface of the `orchestra` binary.

mod agent;
mod cluster;
mod node_token;
mod server;
mod store;
mod up;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Orchestra: container orchestration, the Kubernetes model as a Rust SDK.
#[derive(Debug, Parser)]
#[command(name = "orchestra", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests offline: decode, default and validate them as the API server would.
    Validate(validate::ValidateArgs),
    /// Back up and restore the embedded store's data folder.
    Store(store::StoreArgs),
    /// Run a whole cluster in this process: store, API server, controllers, scheduler and a node.
    Up(up::UpArgs),
    /// Run the control plane: store, API server, controllers and scheduler.
    Server(server::ServerArgs),
    /// Run a node agent that joins a control plane.
    Agent(agent::AgentArgs),
    /// Print the token a node agent joins with (made on first use).
    NodeToken(node_token::NodeTokenArgs),
}

impl Cli {
    /// Runs the command and returns the process's exit code.
    pub(crate) fn run(self) -> ExitCode {
        match self.command {
            Command::Validate(args) => validate::run(&args),
            Command::Store(args) => store::run(&args),
            Command::Up(args) => up::run(&args),
            Command::Server(args) => server::run(&args),
            Command::Agent(args) => agent::run(&args),
            Command::NodeToken(args) => node_token::run(&args),
        }
    }
}
