#!/usr/bin/env bash
# berth against runc and crun on the same busybox bundle, in one run:
#   run of /bin/true (create+start+wait+delete), and create, start, state, delete separately;
#   a create with memory, cpu and pids limits; exec latency; peak RSS of `run`.
# Medians from hyperfine, ratios berth/crun and berth/runc.
#
#   bench/runtime.sh BERTH_BIN ROOTFS
#
# crun 1.8 refuses this host's hybrid cgroups (hugetlb on no v1 hierarchy): the whole bench
# runs in a private mount namespace where a copy of /sys/fs/cgroup gets a hugetlb hierarchy;
# it is unmounted again at the end.
set -euo pipefail
BERTH=${1:?usage: runtime.sh BERTH_BIN ROOTFS}
ROOTFS=${2:?usage: runtime.sh BERTH_BIN ROOTFS}
RUNS=${BENCH_RUNS:-40}

if [ "${BENCH_INNER:-}" != 1 ]; then
    exec unshare --mount --propagation private env BENCH_INNER=1 "$0" "$@"
fi

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
cleanup() {
    for rt in berth runc crun; do
        for id in $(ls "$work/root-$rt" 2>/dev/null); do
            "$(bin "$rt")" --root "$work/root-$rt" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    if mountpoint -q /sys/fs/cgroup/hugetlb 2>/dev/null; then
        rmdir /sys/fs/cgroup/hugetlb/* 2>/dev/null || true
        umount /sys/fs/cgroup/hugetlb || true
    fi
    if [ "$restore_hugetlb" = 1 ]; then
        # The v1 hierarchy goes away when it is unmounted without child cgroups; one that had
        # some at umount lingers, unmounted: mount it again, empty it, unmount. Then give
        # hugetlb back to the unified hierarchy.
        # A cgroup that is still dying keeps it alive a little longer: up to 30 s.
        mkdir -p "$work/hugetlb"
        for _ in $(seq 300); do
            echo +hugetlb > /sys/fs/cgroup/unified/cgroup.subtree_control 2>/dev/null && break
            if mount -t cgroup -o hugetlb cgroup "$work/hugetlb" 2>/dev/null; then
                find "$work/hugetlb" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
                umount "$work/hugetlb"
            fi
            sleep 0.1
        done
        grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.subtree_control \
            || echo "warning: hugetlb could not be given back to /sys/fs/cgroup/unified" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

bin() {
    case $1 in
        berth) echo "$BERTH" ;;
        runc) command -v runc ;;
        crun) command -v crun ;;
    esac
}

# A private /sys/fs/cgroup with every hierarchy plus hugetlb (for crun).
setup_cgroups() {
    local keep=$work/cg-keep
    mkdir -p "$keep"
    local names=()
    for d in /sys/fs/cgroup/*; do
        [ -L "$d" ] && continue
        mountpoint -q "$d" || continue
        local n; n=$(basename "$d")
        mkdir -p "$keep/$n"
        mount --bind "$d" "$keep/$n"
        names+=("$n")
    done
    mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
    for n in "${names[@]}"; do
        mkdir -p "/sys/fs/cgroup/$n"
        mount --move "$keep/$n" "/sys/fs/cgroup/$n"
    done
    mkdir -p /sys/fs/cgroup/hugetlb
    local sc=/sys/fs/cgroup/unified/cgroup.subtree_control
    # hugetlb belongs to the unified hierarchy here (or to a v1 hierarchy that an earlier,
    # interrupted bench left unmounted): it goes back there at the end.
    if grep -qw hugetlb "$sc" 2>/dev/null \
        || { awk '$1 == "hugetlb" && $2 != 0' /proc/cgroups | grep -q . \
            && ! grep -q ' - cgroup .*hugetlb' /proc/self/mountinfo; }; then
        restore_hugetlb=1
    fi
    if ! mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null; then
        # hugetlb is enabled on the unified hierarchy's root: lend it to v1 for the bench.
        if grep -qw hugetlb "$sc" 2>/dev/null && echo -hugetlb > "$sc" 2>/dev/null; then
            mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null || true
        fi
    fi
    mountpoint -q /sys/fs/cgroup/hugetlb \
        || echo "note: could not mount a v1 hugetlb hierarchy; crun may refuse this host" >&2
}
restore_hugetlb=0
setup_cgroups

mkdir -p "$work/bundle"
cp -a "$ROOTFS" "$work/bundle/rootfs"
"$BERTH" spec --bundle "$work/bundle"
# ociVersion 1.0.2: crun 1.8 refuses newer versions.
sed -i -e 's/"terminal": true/"terminal": false/' -e 's|^\(\s*\)"sh"$|\1"/bin/true"|' \
    -e 's/"ociVersion": "[^"]*"/"ociVersion": "1.0.2"/' "$work/bundle/config.json"
mkdir -p "$work/limits"
cp -a "$work/bundle/rootfs" "$work/limits/rootfs"
sed -e 's|"resources": {|"resources": {"memory": {"limit": 67108864}, "cpu": {"shares": 512, "quota": 50000, "period": 100000}, "pids": {"limit": 64},|' \
    "$work/bundle/config.json" > "$work/limits/config.json"
mkdir -p "$work/sleeper"
cp -a "$work/bundle/rootfs" "$work/sleeper/rootfs"
sed -e 's|"/bin/true"|"sleep", "1000"|' "$work/bundle/config.json" > "$work/sleeper/config.json"

runtimes=()
for rt in berth runc crun; do
    b=$(bin "$rt") || continue
    [ -x "$b" ] || continue
    mkdir -p "$work/root-$rt"
    if "$b" --root "$work/root-$rt" run --bundle "$work/bundle" probe-$rt >/dev/null 2>"$work/err-$rt"; then
        runtimes+=("$rt")
    else
        echo "$rt cannot run a container here: $(tail -1 "$work/err-$rt")" >&2
    fi
done

declare -A median
measure() { # NAME RT -- hyperfine args...
    local name=$1 rt=$2; shift 3
    hyperfine -N --style none --runs "$RUNS" --warmup 3 --export-json "$work/h.json" "$@" >/dev/null 2>&1 || {
        echo "$rt: $name failed" >&2; return 0; }
    median[$name,$rt]=$(python3 -c "import json;print(json.load(open('$work/h.json'))['results'][0]['median']*1000)")
}

for rt in "${runtimes[@]}"; do
    b=$(bin "$rt"); r="$b --root $work/root-$rt"
    measure run "$rt" -- "$r run --bundle $work/bundle bench-run"
    measure run-limits "$rt" -- "$r run --bundle $work/limits bench-lim"
    measure create "$rt" -- --prepare "$r delete --force bench-c" "$r create --bundle $work/bundle bench-c"
    measure start "$rt" -- --prepare "sh -c '$r delete --force bench-s >/dev/null 2>&1; $r create --bundle $work/bundle bench-s'" "$r start bench-s"
    $r delete --force bench-s >/dev/null 2>&1 || true
    $r create --bundle "$work/sleeper" bench-st >/dev/null
    measure state "$rt" -- "$r state bench-st"
    $r start bench-st
    measure exec "$rt" -- "$r exec bench-st /bin/true"
    $r delete --force bench-st >/dev/null
    measure delete "$rt" -- --prepare "$r create --bundle $work/bundle bench-d" "$r delete bench-d"
    # Peak RSS varies by a page table's worth between runs: the median of 9.
    rss=$(for _ in 1 2 3 4 5 6 7 8 9; do
        { /usr/bin/time -f %M $r run --bundle "$work/bundle" bench-rss >/dev/null; } 2>&1 | tail -1
    done | sort -n | sed -n 5p)
    median[rss,$rt]=$rss
done

printf '\n%-12s' "operation"
for rt in "${runtimes[@]}"; do printf '%12s' "$rt (ms)"; done
printf '%14s%14s\n' "berth/crun" "berth/runc"
for op in run run-limits create start state exec delete rss; do
    printf '%-12s' "$op"
    for rt in "${runtimes[@]}"; do
        v=${median[$op,$rt]:-}
        if [ -n "$v" ]; then printf '%12.2f' "$v"; else printf '%12s' -; fi
    done
    for other in crun runc; do
        a=${median[$op,berth]:-}; o=${median[$op,$other]:-}
        if [ -n "$a" ] && [ -n "$o" ]; then
            printf '%14.2f' "$(python3 -c "print($a/$o)")"
        else printf '%14s' -; fi
    done
    printf '\n'
done
echo "(rss row: median peak RSS of a run, KiB)"
