#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests that build their own network namespaces
# (never touching the machine's root namespace) and drive the built binaries as runtimes do.
# Needs root for the namespace tests. Installs the Debian packages it needs first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --all
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast "$@"
