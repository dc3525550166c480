#!/usr/bin/env bash
# The project's test command (the README's): formatting, lints, docs and every test.
#
# On a fresh Debian machine run as root it first installs what the tests need. Today that is only
# the Rust toolchain's rustfmt and clippy components and the shared fixtures beside the checkout;
# later capabilities add their components (etcd, dockerd, CNI plugins, ...) here, and CI (.ci/run)
# runs this same script. With CI=true a missing component fails the run instead of being skipped.
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

say "shared fixtures"
if [ ! -d ../shared/fixtures/voting-app ]; then
  echo "../shared/fixtures/voting-app is missing: the tests read the shared fixtures beside the checkout" >&2
  exit 1
fi

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

say "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

say "cargo test"
cargo test --workspace

say "all checks passed"
