//! The `orchestra` binary: the all-in-one command built from Orchestra's crates.
//!
//! Today it has one command, `orchestra validate`, which checks manifests offline; the control
//! plane (`orchestra server`, `orchestra up`) and the node agent (`orchestra agent`) come with
//! their issues.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli.run()
}
