//! `orchestra node-token <node>`: the token a node agent joins with, as user
//! `system:node:<node>` in group `system:nodes` — the identity the node authorizer restricts to
//! that node's own objects.
//!
//! The token is added to the control plane's token file (`<data-dir>/pki/tokens.csv`), which the
//! running server reads again when it changes; asked again, the command prints the same token.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use orchestra_api::authn::node_token;

/// Arguments of `orchestra node-token`.
#[derive(Debug, Args)]
pub(crate) struct NodeTokenArgs {
    /// The node's name (its agent's `--node-name`).
    #[arg(value_name = "NODE")]
    node: String,
    /// The control plane's data folder (`orchestra server --data-dir`).
    #[arg(long, value_name = "FOLDER", default_value = ".orchestra")]
    data_dir: PathBuf,
}

/// Runs `orchestra node-token`: prints the token.
pub(crate) fn run(args: &NodeTokenArgs) -> ExitCode {
    match token(args) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("orchestra node-token: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn token(args: &NodeTokenArgs) -> Result<String> {
    let pki = args.data_dir.join("pki");
    if !pki.join("ca.crt").exists() {
        anyhow::bail!(
            "{} holds no control plane: start `orchestra server --data-dir {}` first",
            args.data_dir.display(),
            args.data_dir.display()
        );
    }
    node_token(&pki.join("tokens.csv"), &args.node)
        .with_context(|| format!("cannot make the token of node {}", args.node))
}
