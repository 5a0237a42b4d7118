#!/bin/sh
# Build the pod sandbox ("pause") image of the CRI tests: one static binary, /pause, from
# pause.c beside this script, as an image tarball that `ctr images import` accepts.
#
#   build-pause-image.sh OUT.tar
#
# Environment: IMAGE_NAME (default berth-pause:1), CC (default cc). Needs a C compiler and a
# static libc (Debian: gcc, libc6-dev). Nothing is downloaded.
set -eu
out=${1:?usage: build-pause-image.sh OUT.tar}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-pause.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

mkdir -p "$work/rootfs"
${CC:-cc} -static -Os -s -o "$work/rootfs/pause" "$here/pause.c"
IMAGE_NAME=${IMAGE_NAME:-berth-pause:1} IMAGE_CMD='["/pause"]' \
    sh "$here/build-image-tar.sh" "$out" "$work/rootfs"
