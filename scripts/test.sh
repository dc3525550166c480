#!/usr/bin/env bash
# The project's test command (the README's): formatting, lints, docs and every test.
#
# On a fresh Debian machine run as root it first installs what the tests need: the Rust
# toolchain's rustfmt and clippy components, `protobuf-compiler` (the etcd backend's build),
# `etcd-server` (its tests) and `busybox-static` (a static busybox the image tests package as an
# image), the official Kubernetes Python client in a virtualenv (scripts/python.sh), and checks
# the shared fixtures beside the checkout; later capabilities add their components (dockerd, CNI
# plugins, ...) here, and CI (.ci/run) runs this same script. It starts a single etcd member for
# the tests (scripts/etcd.sh) and stops it at the end, and builds, lints, documents and tests with
# every feature (`--all-features`). With CI=true a missing component fails the run instead of
# being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

say "toolchain"
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      rustup component add "$component"
    else
      echo "missing cargo $component and no rustup to install it" >&2
      exit 1
    fi
  fi
done
cargo --version

say "system packages"
# Debian package -> a command it installs.
declare -A packages=([protobuf-compiler]=protoc [etcd-server]=etcd [busybox-static]=busybox)
missing=()
for package in "${!packages[@]}"; do
  command -v "${packages[$package]}" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (run this script as root on Debian, or install them)" >&2
    exit 1
  fi
fi
protoc --version
# Not `| head`: with pipefail a writer cut off by head exits 141 (SIGPIPE) and fails the run.
etcd_version="$(etcd --version)"
echo "${etcd_version%%$'\n'*}"

say "etcd"
# A single member for the etcd store's tests (the cluster test starts its own three members).
# One that runs already (a developer's) is used and left running; one started here is stopped on
# exit.
if ORCHESTRA_ETCD_ENDPOINTS="$(scripts/etcd.sh endpoints single 2>/dev/null)"; then
  echo "using the running etcd at $ORCHESTRA_ETCD_ENDPOINTS"
else
  trap 'scripts/etcd.sh stop single >/dev/null 2>&1 || true' EXIT
  ORCHESTRA_ETCD_ENDPOINTS="$(scripts/etcd.sh start single)"
  echo "started etcd at $ORCHESTRA_ETCD_ENDPOINTS"
fi
export ORCHESTRA_ETCD_ENDPOINTS

say "shared fixtures"
if [ ! -d ../shared/fixtures/voting-app ]; then
  echo "../shared/fixtures/voting-app is missing: the tests read the shared fixtures beside the checkout" >&2
  exit 1
fi

say "python client"
# The official Kubernetes Python client in a virtualenv (scripts/python.sh), for
# tests/python_client.rs.
ORCHESTRA_PYTHON="$(scripts/python.sh)"
export ORCHESTRA_PYTHON

say "disk"
# A clean build of every target (clippy's, the docs' and ~50 test binaries) takes several GiB;
# incremental compilation state would double that and buys nothing on a clean checkout, so CI
# builds without it (a developer's own CARGO_INCREMENTAL wins). A CI run once failed for want of
# disk: print what there is so the next one says why.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
df -h . | tail -n 1

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

say "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

say "cargo test"
cargo test --workspace --all-features

say "all checks passed"
