#!/usr/bin/env bash
# Builds a tiny container image offline from Debian's busybox-static, into OUT_DIR:
#   rootfs.tar     the root filesystem (for `podman import`)
#   bb-docker.tar  a docker-archive image named localhost/bb:latest (for `ctr images import`, `podman load`)
# Usage: mk-busybox-image.sh OUT_DIR
set -euo pipefail
out=${1:?usage: mk-busybox-image.sh OUT_DIR}
bb=/bin/busybox
[ -x "$bb" ] || { echo "mk-busybox-image: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,run,root}
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
mkdir -p "$out"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out/rootfs.tar" .

# docker-archive: manifest.json + config named by its digest + the layer, identified by its diff id.
img=$work/img
mkdir -p "$img/layer"
cp "$out/rootfs.tar" "$img/layer/layer.tar"
diff_id=$(sha256sum "$img/layer/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"calico-rs e2e mk-busybox-image.sh"}]}' "$diff_id" > "$img/config.json"
cfg=$(sha256sum "$img/config.json" | cut -d' ' -f1)
mv "$img/config.json" "$img/$cfg.json"
printf '[{"Config":"%s.json","RepoTags":["localhost/bb:latest"],"Layers":["layer/layer.tar"]}]' "$cfg" > "$img/manifest.json"
tar --numeric-owner --owner=0 --group=0 -C "$img" -cf "$out/bb-docker.tar" manifest.json "$cfg.json" layer
