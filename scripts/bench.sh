#!/usr/bin/env bash
# Benchmarks pod network ADD/DEL side by side with Debian's ptp + host-local, in namespaces it creates.
# Usage: scripts/bench.sh [--pods N] [--burst N] [--concurrency 1,4,16] [--out docs/benchmarks.md]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --workspace --bins
CRS_PROFILE=release exec target/release/cni-bench "$@"
