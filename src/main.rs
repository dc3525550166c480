//! The `orchestra` binary: the all-in-one command built from Orchestra's crates.
//!
//! Its commands: `orchestra up` runs a whole cluster in one process; `orchestra server` the
//! control plane alone and `orchestra agent` a node agent that joins one; `orchestra validate`
//! checks manifests offline; `orchestra store backup` and `orchestra store restore` back up and
//! restore the embedded store's data folder.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system allocator: the control plane allocates and frees many small
/// objects from several threads, where glibc's per-thread arenas fragment (measured with
/// `examples/scheduler_perf`: peak memory 3.6 GiB with glibc, 2.3 GiB with mimalloc, and
/// scheduling 1.5x faster). A program embedding the crates chooses its own allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli.run()
}
