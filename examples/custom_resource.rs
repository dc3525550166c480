//! Defines a kind of one's own with `#[derive(CustomResource)]`, registers it, and decodes,
//! defaults and validates manifests of it like the built-in kinds.
//!
//! ```text
//! cargo run --example custom_resource
//! ```

use orchestra::core::CustomResource;
use orchestra::core::manifest;
use orchestra::core::resource::{Resource, ResourceExt};
use orchestra::core::scheme::Scheme;
use orchestra::core::validation::field::{Error, ErrorList, Path};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A database backup that runs on a schedule.
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[resource(
    group = "backups.example.com",
    version = "v1",
    kind = "Backup",
    namespaced
)]
#[resource(
    crate = "orchestra::core",
    defaults = "defaults",
    validate = "validate"
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// The database to back up.
    pub database: String,
    /// Cron schedule.
    pub schedule: String,
    /// How many backups to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

fn defaults(backup: &mut Backup) {
    backup.spec.keep.get_or_insert(7);
}

fn validate(backup: &Backup) -> ErrorList {
    let mut errors = ErrorList::new();
    if backup.spec.schedule.split_whitespace().count() != 5 {
        errors.push(Error::invalid(
            &Path::new("spec").child("schedule"),
            backup.spec.schedule.as_str(),
            "must be a cron schedule of five fields",
        ));
    }
    errors
}

const MANIFESTS: &str = "\
apiVersion: backups.example.com/v1
kind: Backup
metadata:
  name: nightly
spec:
  database: orders
  schedule: '0 2 * * *'
---
apiVersion: backups.example.com/v1
kind: Backup
metadata:
  name: hourly
spec:
  database: orders
  schedule: hourly
  retention: 3
";

fn main() -> anyhow::Result<()> {
    let mut scheme = Scheme::default();
    scheme.register::<Backup>();
    println!(
        "registered {} ({})",
        Backup::kind(&()),
        Backup::api_version(&())
    );
    for document in manifest::parse_all(MANIFESTS)? {
        match scheme.decode(&document) {
            Ok(decoded) => {
                let backup: Backup = decoded.object.try_parse()?;
                println!(
                    "{}: valid, keeps {} backups",
                    backup.name_any(),
                    backup.spec.keep.unwrap_or_default()
                );
            }
            Err(error) => {
                for problem in &error.problems {
                    let at = problem
                        .position
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default();
                    println!("document {}: {}{at}", document.label(), problem.error);
                }
            }
        }
    }
    Ok(())
}
