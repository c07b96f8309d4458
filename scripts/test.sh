#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests that build their own network namespaces
# (never touching the machine's root namespace) and drive the built binaries as runtimes do, up to
# containerd, podman and a libcni client. Needs root. Installs the Debian packages it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --all
# Style and lints are not review topics: the formatter and clippy decide (rustfmt.toml).
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# cni-calico built alone (as scripts/release.sh builds it) must leave the etcd client and TLS out of its
# in-process IPAM; a workspace build unifies features and would turn them back on unnoticed.
if cargo tree -p cni-calico -e normal,features -i cni-ipam | grep -E 'cni-ipam feature "(etcd|tls)"' \
  || cargo tree -p cni-calico -e normal | grep -E '^\W*rustls '; then
  echo "cni-calico pulls in the etcd client or TLS (see cni-calico/Cargo.toml)" >&2
  exit 1
fi
cargo build --workspace --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# cni-calico ships its in-process IPAM without the etcd and tls features (scripts/release.sh); the workspace
# run above unifies them on, so cni-ipam's unit tests run once more the way that copy is built.
cargo test -p cni-ipam --no-default-features --lib 2>&1 | tee -a "$log" || status=$?
# One closing line for the whole run (cargo's own last line is that of whichever binary ran last).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
exit "$status"
