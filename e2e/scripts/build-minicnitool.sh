#!/usr/bin/env bash
# Builds e2e/minicnitool (a libcni client) offline with Debian's golang-go and golang-github-appc-cni-dev:
# GOPATH mode against /usr/share/gocode, no module proxy, build cache under OUT_DIR (never in /usr/share).
# Usage: build-minicnitool.sh OUT_DIR   -> OUT_DIR/minicnitool
set -euo pipefail
out=${1:?usage: build-minicnitool.sh OUT_DIR}
src=$(cd "$(dirname "$0")/../minicnitool" && pwd)
lib=/usr/share/gocode/src/github.com/containernetworking/cni/libcni
[ -d "$lib" ] || { echo "build-minicnitool: $lib missing (apt-get install golang-github-appc-cni-dev)" >&2; exit 1; }
mkdir -p "$out/go-cache"
out=$(cd "$out" && pwd)
cd "$src"
GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= GOCACHE="$out/go-cache" \
  go build -o "$out/minicnitool.tmp" .
mv "$out/minicnitool.tmp" "$out/minicnitool"
