#!/bin/bash
# berthd against dockerd 20.10 (Debian's docker.io, with runc), side by side in one run, driven by
# the same docker CLI: `docker run --rm busybox true`, `docker exec CTR true`, `docker ps` with 100
# containers running, and each daemon's idle and under-load RSS. Prints medians and the ratios
# berthd/dockerd against issue 13's targets (run --rm <= 0.5x, idle RSS <= 0.25x).
#
#   bench/daemon.sh [BERTHD] [ROOTFS]      (root; docker.io, containerd, runc, python3)
#
# BERTHD defaults to the workspace's release build, ROOTFS to rootfs-fixtures/out/rootfs (the
# busybox image is built from it with rootfs-fixtures/build-image-tar.sh and `docker load`ed into
# each daemon: nothing is downloaded). RUNS (default 20) is the number of timed runs of each
# command; the two daemons' runs alternate, so a change in the machine's load hits both alike.
#
# Both daemons get their own data root, exec root, pidfile and unix socket in a temp dir, and
# dockerd its own containerd; dockerd runs with --iptables=false --bridge=none --ip-forward=false
# --ip-masq=false and every container with --network none, so neither touches the host's network
# (checked: links, addresses, routes, iptables and ip_forward are compared before and after).
# Teardown (trap): containers removed, daemons stopped, leftover processes of the temp dir killed,
# its mounts unmounted, the containers' cgroups removed, the temp dir deleted.
#
# RSS: VmRSS/VmHWM from /proc/PID/status (and Pss from smaps_rollup with 100 running, since
# summed RSS counts a binary's shared pages once per process). dockerd's containerd and its per-container
# containerd-shim-runc-v2 processes, and berthd's per-container monitor processes, are reported
# separately from the daemons themselves; "total" adds them up.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
berthd=${1:-${CARGO_TARGET_DIR:-$here/target}/x86_64-unknown-linux-gnu/release/berthd}
rootfs=${2:-$here/rootfs-fixtures/out/rootfs}
runs=${RUNS:-20}
concurrent=${CONCURRENT:-50}
many=${MANY:-100}
docker=${DOCKER_CLI:-/usr/local/bin/docker}

for b in dockerd containerd runc python3 ip; do
    command -v "$b" >/dev/null || { echo "daemon.sh: $b missing (make deps)" >&2; exit 1; }
done
[ -x "$docker" ] || { echo "daemon.sh: no docker CLI at $docker" >&2; exit 1; }
[ -x "$berthd" ] || { echo "daemon.sh: no berthd at $berthd (cargo build --release -p berthd)" >&2; exit 1; }
[ -x "$rootfs/bin/busybox" ] || { echo "daemon.sh: no busybox rootfs at $rootfs (make rootfs)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "daemon.sh: needs root" >&2; exit 1; }

work=$(mktemp -d /tmp/berth-bench-daemon.XXXXXX)
tag=berth-bench-daemon-$$
bsock=$work/berthd.sock
dsock=$work/docker.sock
existed=""
for p in /run/containerd/runc /run/containerd/s /run/containerd /run/docker/plugins /run/docker /etc/docker/key.json; do
    [ -e "$p" ] && existed="$existed $p"
done

netstate() {
    ip -o link show | sed 's/ qlen [0-9]*//'
    ip -o addr show
    ip route show table all 2>/dev/null
    { iptables-save 2>/dev/null || true; } | { grep -v '^#' || true; } | sed 's/\[[0-9:]*\]//'
    cat /proc/sys/net/ipv4/ip_forward
    true
}

# Every container id either daemon created (for the cgroup cleanup).
ids() { DOCKER_HOST=unix://$1 timeout 30 "$docker" ps -aq --no-trunc 2>/dev/null >> "$work/ids" || true; }

cleanup() {
    local rc=$?
    set +e
    trap '' INT TERM
    for s in "$bsock" "$dsock"; do
        [ -S "$s" ] || continue
        ids "$s"
        c=$(DOCKER_HOST=unix://$s timeout 30 "$docker" ps -aq 2>/dev/null)
        # shellcheck disable=SC2086
        [ -z "$c" ] || DOCKER_HOST=unix://$s timeout 120 "$docker" rm -f $c >/dev/null 2>&1
    done
    for pidfile in "$work/berthd/pid" "$work/docker/pid" "$work/containerd.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null
    done
    # Whatever still runs from the temp dir: monitors, shims, containers.
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = $$ ] && continue
        if { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -qF "$work" ||
            readlink "$p/root" 2>/dev/null | grep -qF "$work"; then
            kill -9 "$pid" 2>/dev/null
        fi
    done
    awk -v w="$work" '$5 ~ "^" w { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m"; done
    # Cgroups: dockerd's under /$tag, berthd's named by the container id.
    for h in /sys/fs/cgroup/*/"$tag"; do
        [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    if [ -s "$work/ids" ]; then
        sort -u "$work/ids" > "$work/ids.u"
        for h in /sys/fs/cgroup/*/; do
            [ -L "${h%/}" ] && continue
            find "$h" -maxdepth 3 -mindepth 1 -type d 2>/dev/null | grep -Ff "$work/ids.u" |
                sort -r | while read -r d; do rmdir "$d" 2>/dev/null; done
        done
    fi
    for p in /etc/docker/key.json /run/docker/plugins /run/docker /run/containerd/s /run/containerd/runc /run/containerd; do
        case " $existed " in *" $p "*) continue ;; esac
        if [ -d "$p" ]; then rmdir "$p" 2>/dev/null; else rm -f "$p"; fi
    done
    netstate > "$work/net.after" 2>/dev/null
    if ! cmp -s "$work/net.before" "$work/net.after"; then
        echo "daemon.sh: WARNING: the host's network state changed during the run:" >&2
        diff "$work/net.before" "$work/net.after" >&2
    fi
    if awk -v w="$work" '$5 ~ "^" w { f = 1 } END { exit !f }' /proc/self/mountinfo; then
        echo "daemon.sh: mounts left under $work" >&2
    else
        rm -rf --one-file-system "$work"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
netstate > "$work/net.before"

cat > "$work/rss.py" <<'PY'
# rss.py snap|watch STOPFILE SPEC...: SPEC is NAME=pid:PID (one process: VmRSS, VmHWM) or
# NAME=cmd:SUBSTRING (every process whose cmdline holds it: count and summed VmRSS). snap prints
# one sample; watch samples every 20 ms until STOPFILE exists and prints the peaks.
import os, sys, time
mode, stop, specs = sys.argv[1], sys.argv[2], [s.split("=", 1) for s in sys.argv[3:]]
def status(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            d = {}
            for l in f:
                k, _, v = l.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    d[k] = int(v.split()[0])
            return d
    except OSError:
        return {}
def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for l in f:
                if l.startswith("Pss:"):
                    return int(l.split()[1])
    except OSError:
        pass
    return 0
def sample():
    out = {}
    cmds = {}
    need = any(v.startswith("cmd:") for _, v in specs)
    if need:
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        cmds[p] = f.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    pass
    for name, v in specs:
        kind, _, arg = v.partition(":")
        if kind == "pid":
            s = status(arg)
            out[name + ".rss"] = s.get("VmRSS", 0)
            out[name + ".hwm"] = s.get("VmHWM", 0)
            if mode == "snap":
                out[name + ".pss"] = pss(arg)
        else:
            pids = [p for p, c in cmds.items() if arg in c and p != str(os.getpid())]
            out[name + ".n"] = len(pids)
            out[name + ".rss"] = sum(status(p).get("VmRSS", 0) for p in pids)
            if mode == "snap":
                out[name + ".pss"] = sum(pss(p) for p in pids)
    return out
if mode == "snap":
    s = sample()
else:
    s = {}
    while True:
        for k, v in sample().items():
            s[k] = max(s.get(k, 0), v)
        if os.path.exists(stop):
            break
        time.sleep(0.02)
print(" ".join(f"{k}={v}" for k, v in s.items()))
PY

# Start the daemons.
mkdir -p "$work/containerd" "$work/docker" "$work/berthd"
sed "s|@DIR@|$work/containerd|g" "$here/runtime-tests/engines/containerd.toml" > "$work/containerd.toml"
containerd --config "$work/containerd.toml" > "$work/containerd.log" 2>&1 &
echo $! > "$work/containerd.pid"
csock=$work/containerd/containerd.sock
i=0
until [ -S "$csock" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { cat "$work/containerd.log" >&2; exit 1; }; sleep 0.1
done
sed "s|@DIR@|$work/docker|g" "$here/runtime-tests/engines/daemon.json" > "$work/daemon.json"
dockerd --config-file "$work/daemon.json" --data-root "$work/docker/data" \
    --exec-root "$work/docker/exec" --pidfile "$work/docker/pid" -H "unix://$dsock" \
    --containerd "$csock" --cgroup-parent "/$tag" \
    --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false \
    --storage-driver=overlay2 > "$work/dockerd.log" 2>&1 &
"$berthd" --data-root "$work/berthd/data" --exec-root "$work/berthd/exec" \
    --pidfile "$work/berthd/pid" -H "unix://$bsock" > "$work/berthd.log" 2>&1 &
for s in "$dsock" "$bsock"; do
    i=0
    until DOCKER_HOST=unix://$s "$docker" version >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -ge 300 ]; then
            echo "daemon.sh: no answer on $s" >&2
            tail -20 "$work/dockerd.log" "$work/berthd.log" >&2
            exit 1
        fi
        sleep 0.1
    done
done
dpid=$(cat "$work/docker/pid")
bpid=$(cat "$work/berthd/pid")
cpid=$(cat "$work/containerd.pid")

# One run of the docker CLI against daemon $1 (b or d); on failure print what it said and the
# daemon's log tail and fail.
dk() {
    local who=$1; shift
    local s=$dsock
    [ "$who" = b ] && s=$bsock
    DOCKER_HOST=unix://$s "$docker" "$@"
}
must() {
    local who=$1; shift
    local out
    if ! out=$(dk "$who" "$@" 2>&1); then
        echo "daemon.sh: FAILED against $( [ "$who" = b ] && echo berthd || echo dockerd ): docker $*" >&2
        echo "$out" | tail -5 >&2
        if [ "$who" = b ]; then tail -20 "$work/berthd.log" >&2; else tail -20 "$work/dockerd.log" >&2; fi
        return 1
    fi
    printf '%s' "$out"
}

sh "$here/rootfs-fixtures/build-image-tar.sh" "$work/busybox.tar" "$rootfs" 2>/dev/null
for w in d b; do must $w load -q -i "$work/busybox.tar" >/dev/null; done
run=(run --rm --network none busybox true)
for w in d b; do must $w "${run[@]}" >/dev/null; done   # a first run each (warm caches)

# Idle RSS: image loaded, one container has come and gone, nothing running.
snap() { python3 "$work/rss.py" snap - "$@"; }
dspecs=("dockerd=pid:$dpid" "containerd=pid:$cpid" "shims=cmd:-address $csock")
bspecs=("berthd=pid:$bpid" "monitors=cmd:--berthd-monitor $work/berthd/exec")
idle_d=$(snap "${dspecs[@]}")
idle_b=$(snap "${bspecs[@]}")

# Timed runs, alternating between the daemons; one line "WHO MS" per run.
timed() {
    local label=$1 n=$2; shift 2
    local i w t0 t1
    for ((i = 0; i < n; i++)); do
        for w in d b; do
            [ $((i % 2)) = 1 ] && { [ $w = d ] && w=b || w=d; }
            t0=$EPOCHREALTIME
            must $w "$@" >/dev/null || return 1
            t1=$EPOCHREALTIME
            echo "$label $w $(python3 -c "print(($t1 - $t0) * 1000)")"
        done
    done
}
: > "$work/times"
echo "timing docker ${run[*]} ($runs runs each)..." >&2
timed run "$runs" "${run[@]}" >> "$work/times"

echo "timing docker exec CTR true ($runs runs each)..." >&2
for w in d b; do must $w run -d --network none --name bench-exec busybox sleep 1000 >/dev/null; done
timed exec "$runs" exec bench-exec true >> "$work/times"
for w in d b; do must $w rm -f bench-exec >/dev/null; done

# Under load: $concurrent concurrent `docker run --rm`, one daemon at a time, RSS sampled.
load() {
    local w=$1; shift
    rm -f "$work/stop"
    python3 "$work/rss.py" watch "$work/stop" "$@" > "$work/peak.$w" &
    local sampler=$! i fails=0 t0 t1
    t0=$EPOCHREALTIME
    for ((i = 0; i < concurrent; i++)); do
        dk "$w" "${run[@]}" > "$work/load.$w.$i" 2>&1 &
        echo $! >> "$work/load.$w.pids"
    done
    while read -r p; do wait "$p" || fails=$((fails + 1)); done < "$work/load.$w.pids"
    t1=$EPOCHREALTIME
    touch "$work/stop"
    wait "$sampler"
    echo "fails=$fails ms=$(python3 -c "print(round(($t1 - $t0) * 1000))")" >> "$work/peak.$w"
    if [ $fails -gt 0 ]; then
        echo "daemon.sh: $fails of $concurrent concurrent runs failed against $w; first errors:" >&2
        cat "$work"/load."$w".* 2>/dev/null | grep -v '^[0-9]*$' | sort | uniq -c | head -5 >&2
    fi
}
echo "$concurrent concurrent docker run --rm per daemon..." >&2
load d "${dspecs[@]}"
load b "${bspecs[@]}"
hwm_d=$(snap "${dspecs[@]}")
hwm_b=$(snap "${bspecs[@]}")

# docker ps with $many containers running (named: a generated name may collide).
echo "starting $many containers per daemon..." >&2
start_many() {
    local w=$1 i
    for ((i = 0; i < many; i++)); do
        must "$w" run -d --network none --name "bench-$i" busybox sleep 1000 >/dev/null || return 1
    done
}
start_many d
start_many b
ids "$dsock"; ids "$bsock"
for w in d b; do
    n=$(dk $w ps -q | wc -l)
    [ "$n" = "$many" ] || { echo "daemon.sh: $w lists $n running containers, not $many" >&2; exit 1; }
done
many_d=$(snap "${dspecs[@]}")
many_b=$(snap "${bspecs[@]}")
echo "timing docker ps with $many running ($runs runs each)..." >&2
timed ps "$runs" ps >> "$work/times"
echo "removing the containers..." >&2
for w in d b; do
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2046
    must $w rm -f $(dk $w ps -aq) >/dev/null
    t1=$EPOCHREALTIME
    echo "rmf $w $(python3 -c "print(($t1 - $t0) * 1000)")" >> "$work/times"
done

python3 - "$work/times" "$idle_d" "$idle_b" "$(cat "$work/peak.d")" "$(cat "$work/peak.b")" \
    "$hwm_d" "$hwm_b" "$many_d" "$many_b" "$concurrent" "$many" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import statistics, sys
times, idle_d, idle_b, peak_d, peak_b, hwm_d, hwm_b, many_d, many_b = sys.argv[1:10]
conc, many, load = sys.argv[10], sys.argv[11], sys.argv[12]
kv = lambda s: {k: int(v) for k, v in (x.split("=") for x in s.split())}
idle_d, idle_b, peak_d, peak_b = kv(idle_d), kv(idle_b), kv(peak_d), kv(peak_b)
hwm_d, hwm_b, many_d, many_b = kv(hwm_d), kv(hwm_b), kv(many_d), kv(many_b)
t = {}
for l in open(times):
    label, who, ms = l.split()
    t.setdefault((label, who), []).append(float(ms))
def row(name, d, b, unit, target=None):
    r = b / d if d else float("nan")
    tgt = ""
    if target is not None:
        tgt = f"  target <= {target}x: {'met' if r <= target else 'NOT met'}"
    print(f"{name:<44} {d:>10.1f} {b:>10.1f} {unit:<3} {r:>6.2f}x{tgt}")
print(f"# berthd vs dockerd 20.10 + containerd + runc (load average at the end: {load})")
print(f"{'':<44} {'dockerd':>10} {'berthd':>10} {'':<3} {'b/d':>7}")
for label, name, target in (("run", "docker run --rm busybox true (median)", 0.5),
                            ("exec", "docker exec CTR true (median)", None),
                            ("ps", f"docker ps, {many} running (median)", None)):
    d, b = t.get((label, "d"), []), t.get((label, "b"), [])
    if d and b:
        row(name, statistics.median(d), statistics.median(b), "ms", target)
        print(f"{'  min / max':<44} {min(d):>4.0f}/{max(d):<5.0f} {min(b):>4.0f}/{max(b):<5.0f} ms  (n={len(d)}, {len(b)})")
row(f"docker rm -f of {many} running", t[("rmf", "d")][0], t[("rmf", "b")][0], "ms")
row(f"{conc} concurrent run --rm, wall", peak_d["ms"], peak_b["ms"], "ms")
print(f"{'  failures':<44} {peak_d['fails']:>10} {peak_b['fails']:>10}")
mb = lambda kb: kb / 1024
print("# RSS (MiB): daemon alone; dockerd's containerd and shims, berthd's monitors, separately")
row("idle RSS, daemon (VmRSS)", mb(idle_d["dockerd.rss"]), mb(idle_b["berthd.rss"]), "MiB", 0.25)
print(f"{'  idle containerd (VmRSS)':<44} {mb(idle_d['containerd.rss']):>10.1f}")
row("idle RSS, dockerd+containerd vs berthd", mb(idle_d["dockerd.rss"] + idle_d["containerd.rss"]),
    mb(idle_b["berthd.rss"]), "MiB", 0.25)
row(f"peak RSS under load, daemon (VmHWM)", mb(hwm_d["dockerd.hwm"]), mb(hwm_b["berthd.hwm"]), "MiB")
row(f"  peak VmRSS sampled during load", mb(peak_d["dockerd.rss"]), mb(peak_b["berthd.rss"]), "MiB")
print(f"{'  containerd peak (VmHWM)':<44} {mb(hwm_d['containerd.hwm']):>10.1f}")
row(f"  shims vs monitors, peak summed VmRSS", mb(peak_d["shims.rss"]), mb(peak_b["monitors.rss"]), "MiB")
print(f"{'  shims vs monitors, peak count':<44} {peak_d['shims.n']:>10} {peak_b['monitors.n']:>10}")
row(f"{many} running: daemon VmRSS", mb(many_d["dockerd.rss"]), mb(many_b["berthd.rss"]), "MiB")
print(f"{'  containerd VmRSS':<44} {mb(many_d['containerd.rss']):>10.1f}")
row(f"  shims vs monitors, summed VmRSS", mb(many_d["shims.rss"]), mb(many_b["monitors.rss"]), "MiB")
print(f"{'  shims vs monitors, count':<44} {many_d['shims.n']:>10} {many_b['monitors.n']:>10}")
td = many_d["dockerd.rss"] + many_d["containerd.rss"] + many_d["shims.rss"]
tb = many_b["berthd.rss"] + many_b["monitors.rss"]
row(f"  total (all of the above)", mb(td), mb(tb), "MiB")
print("# PSS (MiB; shared pages split between the processes sharing them), {} running".format(many))
row(f"  daemon", mb(many_d["dockerd.pss"]), mb(many_b["berthd.pss"]), "MiB")
print(f"{'  containerd':<44} {mb(many_d['containerd.pss']):>10.1f}")
row(f"  shims vs monitors, summed", mb(many_d["shims.pss"]), mb(many_b["monitors.pss"]), "MiB")
row(f"  per container (shim vs monitor)", many_d["shims.pss"] / int(many) / 1024,
    many_b["monitors.pss"] / int(many) / 1024, "MiB")
td = many_d["dockerd.pss"] + many_d["containerd.pss"] + many_d["shims.pss"]
tb = many_b["berthd.pss"] + many_b["monitors.pss"]
row(f"  total", mb(td), mb(tb), "MiB")
PY
