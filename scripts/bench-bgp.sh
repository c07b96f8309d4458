#!/usr/bin/env bash
# Benchmarks the node agent (calico-node + BIRD 2) on cluster beds it builds in namespaces (nodes on a fabric
# bridge, one etcd on unix sockets), each figure next to its reference in the same run: a claimed block's route
# to the other kernels vs the same route given to BIRD by hand; start to sessions Established vs BIRD alone
# with BIRD's and Calico's timers; the agent's memory and idle CPU vs Calico's published figures; full mesh vs
# one route reflector at several cluster sizes. Writes docs/bench-bgp.md (or where --out says). Needs root.
# Usage: scripts/bench-bgp.sh [--nodes 10,30,50] [--claims 50] [--reps 3] [--idle 60]
#                             [--only convergence,startup,footprint,scale] [--out docs/bench-bgp.md]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --bgp
out=docs/bench-bgp.md
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$(dirname "$out")"
source scripts/release.sh
release_build -p calico-node -p cni-ipam -p calicoctl -p bench
{
  echo "# BGP benchmarks: the node agent"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) CPUs, $(uname -sr), $(/usr/sbin/bird --version 2>&1 | head -1),"
  echo "by \`scripts/bench-bgp.sh ${args[*]:-}\` (release builds; every node a namespace bed on this one machine)."
  echo
} > "$out.head"
CRS_BIN_DIR="$REL" "$REL/cni-bench" bgp "${args[@]}" --out "$out.body"
cat "$out.head" "$out.body" > "$out"
rm -f "$out.head" "$out.body"
echo "wrote $out"
