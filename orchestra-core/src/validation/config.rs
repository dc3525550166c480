//! Checks of configuration data: ConfigMaps, Secrets and ServiceAccounts (Kubernetes'
//! `ValidateConfigMap`, `ValidateSecret`, `ValidateServiceAccount`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};

use super::Validate;
use super::field::{Error, ErrorList, Path};
use super::meta::{NameRule, validate_metadata};
use super::names;
use super::pod::invalid_each;

/// Most bytes a ConfigMap's or Secret's data may hold.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

/// The annotation that ties a service account token secret to its account.
pub const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

fn too_big(path: &Path, size: usize) -> Error {
    Error {
        detail: format!("must have at most {MAX_DATA_SIZE} bytes"),
        bad_value: Some(size.into()),
        ..Error::too_long(path, MAX_DATA_SIZE)
    }
}

impl Validate for ConfigMap {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        let mut size = 0;
        let mut keys = BTreeSet::new();
        for (key, value) in self.data.iter().flatten() {
            invalid_each(
                names::config_key(key),
                &Path::new("data").key(key),
                key,
                &mut errors,
            );
            keys.insert(key.as_str());
            size += value.len();
        }
        for (key, value) in self.binary_data.iter().flatten() {
            let key_path = Path::new("binaryData").key(key);
            invalid_each(names::config_key(key), &key_path, key, &mut errors);
            if keys.contains(key.as_str()) {
                errors.push(Error::invalid(
                    &Path::new("data").key(key),
                    key.as_str(),
                    "duplicate of key present in binaryData",
                ));
            }
            size += value.0.len();
        }
        if size > MAX_DATA_SIZE {
            errors.push(too_big(&Path::root(), size));
        }
        errors
    }
}

/// The keys each well-known secret type must have.
fn required_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    }
}

impl Validate for Secret {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        let mut size = 0;
        let data = self.data.clone().unwrap_or_default();
        for (key, value) in &data {
            invalid_each(
                names::config_key(key),
                &Path::new("data").key(key),
                key,
                &mut errors,
            );
            size += value.0.len();
        }
        if size > MAX_DATA_SIZE {
            errors.push(too_big(&Path::new("data"), size));
        }
        let secret_type = self.type_.as_deref().unwrap_or("Opaque");
        for key in required_keys(secret_type) {
            if !data.contains_key(*key) {
                errors.push(Error::required(&Path::new("data").key(key), ""));
            }
        }
        match secret_type {
            "kubernetes.io/service-account-token" => {
                let annotated = self
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SERVICE_ACCOUNT_NAME_ANNOTATION))
                    .is_some_and(|name| !name.is_empty());
                if !annotated {
                    errors.push(Error::required(
                        &Path::new("metadata")
                            .child("annotations")
                            .key(SERVICE_ACCOUNT_NAME_ANNOTATION),
                        "",
                    ));
                }
            }
            "kubernetes.io/basic-auth"
                if !data.contains_key("username") && !data.contains_key("password") =>
            {
                errors.push(Error::required(
                    &Path::new("data").key("username"),
                    "either username or password is required",
                ));
            }
            "kubernetes.io/dockerconfigjson" => {
                if let Some(config) = data.get(".dockerconfigjson")
                    && serde_json::from_slice::<serde_json::Value>(&config.0).is_err()
                {
                    errors.push(Error::invalid(
                        &Path::new("data").key(".dockerconfigjson"),
                        "<secret contents redacted>",
                        "must be valid JSON",
                    ));
                }
            }
            _ => {}
        }
        errors
    }
}

impl Validate for ServiceAccount {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        for (i, secret) in self.image_pull_secrets.iter().flatten().enumerate() {
            if secret.name.is_empty() {
                errors.push(Error::required(
                    &Path::new("imagePullSecrets").index(i).child("name"),
                    "",
                ));
            }
        }
        errors
    }
}
