#!/bin/sh
# Build a one-layer busybox image tarball that docker, podman and containerd can all load.
#
#   build-image-tar.sh OUT.tar [ROOTFS]
#
# ROOTFS defaults to a fresh one from build-rootfs.sh (busybox-static). The tarball is a
# docker-archive (`docker save` layout: manifest.json, <config>.json, <layer>/layer.tar) that
# also carries an OCI image layout (oci-layout, index.json, blobs/sha256/...) over the same
# blobs, so `docker load`, `podman load` and `ctr images import` accept it.
#
# Environment: IMAGE_NAME (default busybox:latest), the name the image is tagged with;
# IMAGE_CMD (default ["sh"]), the config's Cmd as a JSON array (set, ROOTFS need not hold busybox).
# Output is reproducible: fixed mtimes, numeric owners, sorted entries. Nothing is downloaded.
set -eu
out=${1:?usage: build-image-tar.sh OUT.tar [ROOTFS]}
rootfs=${2:-}
name=${IMAGE_NAME:-busybox:latest}
cmd=${IMAGE_CMD:-'["sh"]'}
here=$(cd "$(dirname "$0")" && pwd)

case "$name" in
    *:*) repo=${name%:*}; tag=${name##*:} ;;
    *) repo=$name; tag=latest ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-image.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

if [ -z "$rootfs" ]; then
    sh "$here/build-rootfs.sh" "$work/rootfs"
    rootfs=$work/rootfs
fi
[ -n "${IMAGE_CMD:-}" ] || [ -x "$rootfs/bin/busybox" ] || { echo "build-image-tar.sh: $rootfs has no bin/busybox" >&2; exit 1; }

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# The layer: every entry of the rootfs, owned numerically, mtime 0, sorted.
(cd "$rootfs" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort) > "$work/top"
tar -C "$rootfs" --numeric-owner --sort=name --mtime=@0 --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -cf "$work/layer.tar" -T "$work/top"
layer=$(sha "$work/layer.tar")
layer_size=$(size "$work/layer.tar")

# The image config (docker and OCI share this format).
printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"1970-01-01T00:00:00Z\",\
\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\
\"Cmd\":$cmd,\"WorkingDir\":\"/\"},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer\"]},\
\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"rootfs-fixtures/build-image-tar.sh\"}]}" \
    > "$work/config.json"
config=$(sha "$work/config.json")
config_size=$(size "$work/config.json")

img=$work/img
mkdir -p "$img/blobs/sha256" "$img/$layer"
cp "$work/layer.tar" "$img/blobs/sha256/$layer"
ln "$img/blobs/sha256/$layer" "$img/$layer/layer.tar"
cp "$work/config.json" "$img/blobs/sha256/$config"
ln "$img/blobs/sha256/$config" "$img/$config.json"

# docker-archive part.
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
    "$config" "$repo:$tag" "$layer" > "$img/manifest.json"
printf '{"%s":{"%s":"%s"}}' "$repo" "$tag" "$layer" > "$img/repositories"

# OCI layout part, over the same blobs (layer uncompressed).
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$layer\",\"size\":$layer_size}]}" \
    > "$work/manifest"
manifest=$(sha "$work/manifest")
manifest_size=$(size "$work/manifest")
cp "$work/manifest" "$img/blobs/sha256/$manifest"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest\",\"size\":$manifest_size,\
\"annotations\":{\"io.containerd.image.name\":\"docker.io/library/$repo:$tag\",\"org.opencontainers.image.ref.name\":\"$tag\"}}]}" \
    > "$img/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$img/oci-layout"

(cd "$img" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort) > "$work/entries"
tar -C "$img" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 --hard-dereference \
    -cf "$work/image.tar" -T "$work/entries"
mkdir -p "$(dirname "$out")"
mv "$work/image.tar" "$out.tmp.$$"
mv "$out.tmp.$$" "$out"
echo "$out: $repo:$tag config sha256:$config layer sha256:$layer" >&2
