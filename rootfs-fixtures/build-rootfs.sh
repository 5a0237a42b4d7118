#!/bin/sh
# Build a minimal busybox rootfs from Debian's busybox-static package.
#
#   build-rootfs.sh DEST
#
# DEST/ gets bin/busybox plus one symlink per applet, /etc/passwd and /etc/group with a few
# users, and the empty directories a container expects. Nothing is downloaded: the only input
# is /bin/busybox from the busybox-static package.
set -eu
dest=${1:?usage: build-rootfs.sh DEST}
bb=${BUSYBOX:-/bin/busybox}

if ! "$bb" --list >/dev/null 2>&1; then
    echo "build-rootfs.sh: $bb is not a working busybox (apt-get install busybox-static)" >&2
    exit 1
fi

tmp="$dest.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
cd "$tmp"
mkdir -p bin sbin usr/bin usr/sbin etc dev proc sys tmp root home run var/tmp mnt
chmod 1777 tmp var/tmp
chmod 700 root
cp "$bb" bin/busybox
chmod 755 bin/busybox
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] && continue
    [ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done
cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
berth:x:1000:1000:berth test user:/home/berth:/bin/sh
P
cat > etc/group <<'G'
root:x:0:
daemon:x:1:
audio:x:29:berth
video:x:44:berth
users:x:100:berth
nogroup:x:65534:
berth:x:1000:
G
mkdir -p home/berth
chown 1000:1000 home/berth
echo berth-fixture > etc/hostname
: > etc/resolv.conf
: > etc/hosts
cd - >/dev/null
rm -rf "$dest"
mv "$tmp" "$dest"
