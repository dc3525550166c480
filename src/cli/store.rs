//! `orchestra store`: the embedded store's data folder — backups and restores.
//!
//! - `orchestra store backup --data-dir <folder> --to <file>` writes a backup of the store in the
//!   folder, whether or not a running process has it open (every write acknowledged before the
//!   backup started is in it).
//! - `orchestra store restore --from <file> --data-dir <folder>` makes a new data folder from a
//!   backup; the folder must not hold a store yet.
//!
//! Exit status: 0 on success, 1 when the store or the backup is damaged or the folder is taken,
//! 2 on usage or I/O errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use orchestra_store::embedded::{EmbeddedStore, OpenError};

/// Arguments of `orchestra store`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Back up the embedded store of a data folder to one file (online: the store may be in use).
    Backup {
        /// The store's data folder.
        #[arg(long, value_name = "FOLDER")]
        data_dir: PathBuf,
        /// The backup file to write.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Make a new data folder from a backup file.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The data folder to create (it must not hold a store).
        #[arg(long, value_name = "FOLDER")]
        data_dir: PathBuf,
    },
}

fn failure(error: &OpenError) -> ExitCode {
    eprintln!("error: {error}");
    match error {
        OpenError::Io { .. } => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

/// Runs `orchestra store`.
pub(crate) fn run(args: &StoreArgs) -> ExitCode {
    match &args.command {
        StoreCommand::Backup { data_dir, to } => {
            if !data_dir.is_dir() {
                eprintln!("error: {} is not a data folder", data_dir.display());
                return ExitCode::from(2);
            }
            match EmbeddedStore::backup_data_dir(data_dir, to) {
                Ok(revision) => {
                    eprintln!(
                        "backed up {} at revision {revision} to {}",
                        data_dir.display(),
                        to.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => failure(&error),
            }
        }
        StoreCommand::Restore { from, data_dir } => match EmbeddedStore::restore(from, data_dir) {
            Ok(()) => {
                eprintln!("restored {} into {}", from.display(), data_dir.display());
                ExitCode::SUCCESS
            }
            Err(error) => failure(&error),
        },
    }
}
