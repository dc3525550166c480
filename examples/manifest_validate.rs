//! Reads manifests, decodes every object strictly, applies Kubernetes' defaults and validates it,
//! as `orchestra validate` does, and prints what each object became.
//!
//! ```text
//! cargo run --example manifest_validate -- ../shared/fixtures/voting-app/vote-deployment.yaml
//! ```
//!
//! With no argument it reads the voting app's manifests from `../shared/fixtures/voting-app/`.

use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use orchestra::core::k8s::api::apps::v1::Deployment;
use orchestra::core::manifest;
use orchestra::core::scheme::Scheme;

fn main() -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        let folder = "../shared/fixtures/voting-app";
        for entry in fs::read_dir(folder).with_context(|| format!("reading {folder}"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
        files.sort();
    }
    let scheme = Scheme::default();
    for file in files {
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for document in manifest::parse(&text) {
            let document = match document {
                Ok(document) => document,
                Err(error) => {
                    println!("{}: {error}", file.display());
                    continue;
                }
            };
            match scheme.decode(&document) {
                Ok(decoded) => {
                    let name = decoded.object.metadata.name.clone().unwrap_or_default();
                    print!(
                        "{}: {} {name}: valid",
                        file.display(),
                        decoded.resource.kind
                    );
                    if decoded.resource.kind == "Deployment" {
                        let deployment: Deployment = decoded.object.try_parse()?;
                        let spec = deployment.spec.unwrap_or_default();
                        let strategy = spec.strategy.unwrap_or_default();
                        print!(
                            " (replicas {}, strategy {}, revision history {})",
                            spec.replicas.unwrap_or_default(),
                            strategy.type_.unwrap_or_default(),
                            spec.revision_history_limit.unwrap_or_default()
                        );
                    }
                    println!();
                }
                Err(error) => {
                    for problem in &error.problems {
                        println!("{}:{}: {}", file.display(), document.label(), problem.error);
                    }
                }
            }
        }
    }
    Ok(())
}
