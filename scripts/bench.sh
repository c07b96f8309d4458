#!/usr/bin/env bash
# Benchmarks pod network ADD/DEL side by side with Debian's ptp + host-local, in namespaces it creates (the
# etcd-store contender against a single-member etcd it starts on a unix socket and removes), then the IPAM
# allocator alone against 0..60k existing allocations. Writes docs/benchmarks.md and SVG charts next to it
# (or where --out says). Needs root.
# Usage: scripts/bench.sh [--pods N] [--burst N] [--concurrency 1,4,16] [--levels 0,1000,10000]
#                         [--growth-samples N] [--only sequential,burst,growth] [--out docs/benchmarks.md]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --bench
out=docs/benchmarks.md
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$(dirname "$out")"
source scripts/release.sh
release_build --workspace --bins
{
  echo "# Benchmarks"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) CPUs, $(uname -sr), by \`scripts/bench.sh ${args[*]:-}\`."
  echo "Every plugin is called the same way: env + stdin, from a node network namespace, one process per call."
  echo "The node agent's BGP benchmarks are in [bench-bgp.md](bench-bgp.md) (\`scripts/bench-bgp.sh\`)."
  echo
} > "$out.head"
CRS_BIN_DIR="$REL" "$REL/cni-bench" "${args[@]}" --out "$out.body"
{
  echo "## IPAM alone: allocation latency in-process, by existing allocations"
  echo
  echo "\`cni-bench alloc --samples 2000\` (60 simulated nodes hold the existing allocations; file = the local store with its fsyncs)."
  echo
  "$REL/cni-bench" alloc --samples 2000
  echo
} > "$out.ipam"
cat "$out.head" "$out.body" "$out.ipam" > "$out"
rm -f "$out.head" "$out.body" "$out.ipam"
echo "wrote $out"
