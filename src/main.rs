//! The `orchestra` binary: the all-in-one command built from Orchestra's crates.
//!
//! Its commands today: `orchestra validate` checks manifests offline; `orchestra store backup` and
//! `orchestra store restore` back up and restore the embedded store's data folder. The control
//! plane (`orchestra server`, `orchestra up`) and the node agent (`orchestra agent`) come with
//! their issues.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli.run()
}
