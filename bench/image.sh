#!/bin/sh
# Unpack benchmark: one ~500 MB gzip layer of real files from /usr, unpacked by
#   berth (the `berth-image` binary that `berth image` runs), `umoci unpack`, and `tar -xzf`.
# Prints hyperfine medians and CPU times, berth/tar and umoci/berth ratios, and peak RSS of each.
#
#   bench/image.sh [SIZE_MB]      (needs root, hyperfine, umoci, GNU time)
set -eu
size_mb=${1:-500}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target-bench}
work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

echo "building berth-image (release)..." >&2
(cd "$here" && CARGO_TARGET_DIR=$target cargo build -q --release -p berth-image-cli --bin berth-image)
cli=$(ls "$target"/*/release/berth-image "$target"/release/berth-image 2>/dev/null | head -1)

echo "building a ${size_mb} MB layer from /usr..." >&2
find /usr/lib /usr/share /usr/bin -xdev -type f -printf '%s %p\n' 2>/dev/null \
    | awk -v max=$((size_mb * 1048576)) '{ if (tot + $1 > max) exit; tot += $1; sub(/^[0-9]+ \//, ""); print }' \
    > "$work/list"
tar -C / --no-recursion -cf "$work/layer.tar" -T "$work/list"
gzip -6 -c "$work/layer.tar" > "$work/layer.tar.gz"

layout=$work/layout
mkdir -p "$layout/blobs/sha256"
sha() { sha256sum "$1" | cut -d' ' -f1; }
diffid=$(sha "$work/layer.tar")
ldig=$(sha "$work/layer.tar.gz")
lsize=$(stat -c %s "$work/layer.tar.gz")
cp "$work/layer.tar.gz" "$layout/blobs/sha256/$ldig"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diffid" > "$work/config"
cdig=$(sha "$work/config"); csize=$(stat -c %s "$work/config"); cp "$work/config" "$layout/blobs/sha256/$cdig"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cdig" "$csize" "$ldig" "$lsize" > "$work/manifest"
mdig=$(sha "$work/manifest"); msize=$(stat -c %s "$work/manifest"); cp "$work/manifest" "$layout/blobs/sha256/$mdig"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$mdig" "$msize" > "$layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
rm -f "$work/layer.tar"

store=$work/store
"$cli" --image-root "$store" load "$layout" --name localhost/bench >/dev/null
out=$work/out
berth="$cli --image-root $store unpack localhost/bench:bench --bundle $out -q"
umoci="umoci unpack --image $layout:bench $out"
tarx="mkdir -p $out && tar -C $out -xzf $work/layer.tar.gz"

echo "tar: $(du -sh "$work/layer.tar.gz" | cut -f1) gzip, $(wc -l < "$work/list") files" >&2
hyperfine --runs "${RUNS:-5}" --warmup 1 --prepare "rm -rf $out; sync" --export-json "$work/h.json" \
    -n berth "$berth" -n umoci "$umoci" -n tar "$tarx" >&2
rm -rf "$out"

rss() { rm -rf "$out"; /usr/bin/time -v sh -c "$1" 2>&1 >/dev/null | awk -F: '/Maximum resident/ { gsub(/ /, "", $2); print $2 }'; }
r_berth=$(rss "$berth"); r_umoci=$(rss "$umoci"); r_tar=$(rss "$tarx")
rm -rf "$out"

python3 - "$work/h.json" "$r_berth" "$r_umoci" "$r_tar" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
r = {x["command"]: x["median"] for x in res}
# CPU time (user + system, all threads and children): what the tool costs on a busy machine.
cpu = {x["command"]: x["user"] + x["system"] for x in res}
rss = dict(zip(["berth", "umoci", "tar"], sys.argv[2:5]))
for k in ("berth", "umoci", "tar"):
    print(f"{k:6} median {r[k]:7.3f} s   cpu {cpu[k]:7.3f} s   peak RSS {int(rss[k]) / 1024:7.1f} MiB")
print(f"berth/tar   = {r['berth'] / r['tar']:.2f}  (target <= 0.70)")
print(f"umoci/berth = {r['umoci'] / r['berth']:.2f}  (target >= 4)")
print(f"berth peak RSS {int(rss['berth']) / 1024:.1f} MiB (target < 64)")
print(f"cpu: berth/tar = {cpu['berth'] / cpu['tar']:.2f}, umoci/berth = {cpu['umoci'] / cpu['berth']:.2f}")
with open("/proc/loadavg") as f:
    print(f"load average at the end: {f.read().split()[0]} on {__import__('os').cpu_count()} cpus")
PY
