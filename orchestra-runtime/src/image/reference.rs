//! Image references, normalised as Kubernetes, Docker and containerd do.
//!
//! A pod spec names an image in its short, "familiar" form (`busybox`, `nginx:1.27`,
//! `quay.io/coreos/etcd:v3.5`); the store keys images by the fully qualified form
//! (`docker.io/library/busybox:latest`) so that every spelling of the same name finds the same
//! image:
//!
//! - a name without a registry domain is on Docker Hub, `docker.io` (a first component is a
//!   domain when it holds a `.` or a `:`, or is `localhost`); `index.docker.io` is `docker.io`;
//! - a single-component name on Docker Hub is an official image, under `library/`;
//! - a name with neither tag nor digest is tagged `latest`.
//!
//! A reference may also pin a manifest digest (`busybox@sha256:...`), and an image is also
//! named by its id, `sha256:` and the 64 hex digits of its configuration's digest (see
//! [`image_id`]).

use std::fmt;

use super::ImageError;
use super::digest::Digest;

/// The registry of names without a domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Where Docker Hub's official images are (`busybox` is `docker.io/library/busybox`).
const OFFICIAL_REPOSITORY_PREFIX: &str = "library/";
/// The tag of a name given without a tag or digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository name (domain and path) Docker accepts.
const NAME_MAX: usize = 255;
/// The longest tag.
const TAG_MAX: usize = 128;

/// A parsed and normalised image reference.
///
/// Its [`Display`](fmt::Display) form is the fully qualified one:
/// `domain/path[:tag][@digest]`.
///
/// # Examples
///
/// ```
/// use orchestra_runtime::image::Reference;
///
/// # fn main() -> Result<(), orchestra_runtime::image::ImageError> {
/// let reference = Reference::parse("busybox")?;
/// assert_eq!(reference.to_string(), "docker.io/library/busybox:latest");
/// assert_eq!(reference.name(), "docker.io/library/busybox");
/// assert_eq!(reference.tag(), Some("latest"));
///
/// let other = Reference::parse("localhost:5000/team/app:v2")?;
/// assert_eq!(other.domain(), "localhost:5000");
/// assert_eq!(other.path(), "team/app");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `reference`.
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidReference`] when it is not a valid reference: empty, upper case in
    /// the repository path, characters a name cannot hold, a tag or digest of the wrong shape,
    /// or an image id (`sha256:...`, which names an image but not a repository; see
    /// [`image_id`]).
    pub fn parse(reference: &str) -> Result<Reference, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        if image_id(reference).is_some() {
            return Err(invalid(
                "an image id names an image, not a repository and tag",
            ));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                let digest = Digest::parse(digest)
                    .ok_or_else(|| invalid("the digest is not `sha256:` and 64 hex digits"))?;
                (rest, Some(digest.to_string()))
            }
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(invalid(
                "a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
            ));
        }
        if name.is_empty() {
            return Err(invalid("the repository name is empty"));
        }
        if name.len() > NAME_MAX {
            return Err(invalid("the repository name is longer than 255 characters"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first, rest.to_owned())
            }
            _ => (DEFAULT_DOMAIN, name.to_owned()),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN
        } else {
            domain
        };
        if !valid_domain(domain) {
            return Err(invalid(
                "the registry domain is not a host name with an optional port",
            ));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPOSITORY_PREFIX}{path}")
        } else {
            path
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("the repository name must be lower case"));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(invalid(
                "each part of the repository name is lower-case letters and digits, separated \
                 by `.`, `_`, `__` or dashes",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain: domain.to_owned(),
            path,
            tag,
            digest,
        })
    }

    /// The registry: `docker.io`, `quay.io`, `localhost:5000`, ...
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository within the registry: `library/busybox`, `team/app`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The fully qualified repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if the reference has one (`latest` when it had neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The manifest digest it pins, if any (`sha256:...`).
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The key the store files the reference under: `name@digest` when it pins a digest (a
    /// tag beside a digest is ignored, as containerd does), `name:tag` otherwise.
    pub(crate) fn key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => format!("{}@{digest}", self.name()),
            (None, Some(tag)) => format!("{}:{tag}", self.name()),
            (None, None) => self.name(),
        }
    }

    /// This repository pinned at `digest`, without a tag.
    pub(crate) fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest.to_owned()),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The image id `reference` spells, if it is one: `sha256:` and 64 lower-case hex digits, or
/// the 64 hex digits alone (as `docker` and `crictl` accept). The id is returned with its
/// `sha256:` prefix.
///
/// # Examples
///
/// ```
/// use orchestra_runtime::image::image_id;
///
/// let hex = "a".repeat(64);
/// assert_eq!(image_id(&hex), Some(format!("sha256:{hex}")));
/// assert_eq!(image_id(&format!("sha256:{hex}")), Some(format!("sha256:{hex}")));
/// assert_eq!(image_id("busybox"), None);
/// ```
pub fn image_id(reference: &str) -> Option<String> {
    Digest::parse(reference)
        .or_else(|| Digest::from_hex(reference))
        .map(|digest| digest.to_string())
}

fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok
        && tag.len() <= TAG_MAX
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.strip_prefix('[') {
        // An IPv6 address: `[::1]:5000`.
        Some(rest) => match rest.split_once(']') {
            Some((address, rest)) => {
                if address.is_empty()
                    || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
                {
                    return false;
                }
                match rest {
                    "" => return true,
                    _ => match rest.strip_prefix(':') {
                        Some(port) => ("ipv6", Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        },
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.first().is_none_or(|&b| !alnum(b)) || bytes.last().is_none_or(|&b| !alnum(b)) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(reference: &str) -> String {
        match Reference::parse(reference) {
            Ok(parsed) => parsed.to_string(),
            Err(error) => format!("error: {error}"),
        }
    }

    #[test]
    fn short_names_are_docker_hub_official_images_tagged_latest() {
        for short in [
            "busybox",
            "busybox:latest",
            "library/busybox",
            "docker.io/busybox",
            "docker.io/library/busybox",
            "docker.io/library/busybox:latest",
            "index.docker.io/library/busybox:latest",
        ] {
            assert_eq!(
                normalised(short),
                "docker.io/library/busybox:latest",
                "{short}"
            );
        }
    }

    #[test]
    fn names_keep_their_registry_path_and_tag() {
        assert_eq!(normalised("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(
            normalised("bitnami/redis"),
            "docker.io/bitnami/redis:latest"
        );
        assert_eq!(
            normalised("quay.io/coreos/etcd:v3.5.0"),
            "quay.io/coreos/etcd:v3.5.0"
        );
        assert_eq!(normalised("localhost/app"), "localhost/app:latest");
        assert_eq!(
            normalised("localhost:5000/a/b/c:dev"),
            "localhost:5000/a/b/c:dev"
        );
        assert_eq!(
            normalised("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(normalised("[::1]:5000/app:v1"), "[::1]:5000/app:v1");
        assert_eq!(
            normalised("my-registry:5000/team_a/app__x.y-z:1.0_rc-1"),
            "my-registry:5000/team_a/app__x.y-z:1.0_rc-1"
        );
    }

    #[test]
    fn digests_are_kept_and_a_tag_beside_one_is_ignored_for_lookups() -> Result<(), ImageError> {
        let hex = "0123456789abcdef".repeat(4);
        let pinned = Reference::parse(&format!("busybox@sha256:{hex}"))?;
        assert_eq!(pinned.tag(), None);
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/busybox@sha256:{hex}")
        );
        let both = Reference::parse(&format!("busybox:1.36@sha256:{hex}"))?;
        assert_eq!(
            both.to_string(),
            format!("docker.io/library/busybox:1.36@sha256:{hex}")
        );
        assert_eq!(both.key(), pinned.key());
        assert_eq!(
            Reference::parse("busybox")?.with_digest(&format!("sha256:{hex}")),
            pinned
        );
        Ok(())
    }

    #[test]
    fn invalid_references_are_refused() {
        for bad in [
            "",
            ":latest",
            "busybox:",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:-tag",
            "busybox:.tag",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "a//b",
            "a/",
            "-a",
            "a--",
            "a...b",
            "a b",
            "busybox:tag with space",
            "exa mple.com/x",
            "example.com:port/x",
            "[zz]:5000/x",
        ] {
            assert!(
                matches!(
                    Reference::parse(bad),
                    Err(ImageError::InvalidReference { .. })
                ),
                "{bad:?} parsed as {:?}",
                Reference::parse(bad)
            );
        }
        let long = "a".repeat(256);
        assert!(Reference::parse(&long).is_err());
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
    }

    #[test]
    fn ids_are_not_references() {
        let hex = "f".repeat(64);
        assert_eq!(image_id(&hex), Some(format!("sha256:{hex}")));
        assert!(Reference::parse(&format!("sha256:{hex}")).is_err());
        assert!(Reference::parse(&hex).is_err());
        assert_eq!(image_id(&"f".repeat(63)), None);
        assert_eq!(image_id("sha256:xyz"), None);
    }

    #[test]
    fn path_components_follow_the_distribution_grammar() {
        for good in ["a", "a0", "a.b", "a_b", "a__b", "a-b", "a---b", "a.b-c_d"] {
            assert!(valid_path_component(good), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "a___b", "a_-b", "A", "a/b", "a:b"] {
            assert!(!valid_path_component(bad), "{bad}");
        }
    }
}
