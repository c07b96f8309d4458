#!/usr/bin/env bash
# Installs the Debian packages the tests, demo and benchmarks need. Idempotent: does nothing when all are present.
set -euo pipefail
pkgs=(iproute2 iputils-ping containernetworking-plugins procps util-linux jq time)
# --bench: what scripts/bench.sh needs on top (the etcd-store contender runs its own etcd-server).
case "${1:-}" in
  --all) pkgs+=(containerd runc podman busybox-static golang-go golang-github-appc-cni-dev etcd-server etcd-client curl iptables openssl) ;;
  --bench) pkgs+=(etcd-server) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
