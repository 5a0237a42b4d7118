#!/bin/sh
# Pod start and stop latency under containerd's CRI plugin, driven by crictl as kubelet drives
# it, with the runtime handlers `berth` and `runc` in the same containerd, pods interleaved.
#
#   start: runp + create + start of one busybox container, until crictl reports it RUNNING
#   stop:  stopp + rmp of that pod (container included)
#
# A second pass (half as many pods) runs the same runtimes behind bench/timed-exec.c, which
# logs each call the shim makes, and prints how much of stopp+rmp is the runtime's own time
# and where a runtime costing nothing would land.
#
# Prints the median and mean of each (ms) and berth's ratio to runc (target: at or below 0.8x).
# containerd runs inside a network namespace made here (CNI bridge, iptables rules and all);
# root, state, sockets, logs and cgroups (/berth-bench-cri-PID) are this run's and removed
# afterwards. As on a node with containerd's defaults, its state (bundles, shim sockets) and
# the runtimes' roots are on a tmpfs (/run/containerd, /run/containerd/runc there), its root
# (images, snapshots) on disk. Uses runtime-tests/cri/ (configs) and rootfs-fixtures/
# (images, nothing downloaded).
#
#   bench/cri.sh [PODS]     (root; containerd, containernetworking-plugins, runc, gcc, crictl)
#
# BERTH_BIN picks berth (default: the release build); CRICTL crictl (default
# ../shared/tools/crictl beside the repository); PODS or the argument the pods per handler (20).
set -eu
pods=${1:-${PODS:-20}}
here=$(cd "$(dirname "$0")/.." && pwd)
cri=$here/runtime-tests/cri
crictl_bin=${CRICTL:-$here/../shared/tools/crictl}
berth=${BERTH_BIN:-${CARGO_TARGET_DIR:-$here/target}/x86_64-unknown-linux-gnu/release/berth}
runc=$(command -v runc || echo /usr/sbin/runc)

[ "$(id -u)" = 0 ] || { echo "cri.sh: needs root" >&2; exit 1; }
for b in containerd ctr unshare nsenter ip python3 cc "$runc"; do
    command -v "$b" >/dev/null || { echo "cri.sh: $b missing (make deps)" >&2; exit 1; }
done
[ -x "$crictl_bin" ] || { echo "cri.sh: crictl not found at $crictl_bin (set CRICTL)" >&2; exit 1; }
[ -x "$berth" ] || { echo "cri.sh: berth not found at $berth (set BERTH_BIN)" >&2; exit 1; }
[ -x /usr/lib/cni/bridge ] || { echo "cri.sh: CNI plugins missing (containernetworking-plugins)" >&2; exit 1; }

work=$(mktemp -d /tmp/berth-bench-cri.XXXXXX)
tag=berth-bench-cri-$$
existed=""
for p in /run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni; do
    [ -e "$p" ] && existed="$existed $p"
done
holder=""
ctrd=""

cleanup() {
    set +e
    if [ -n "$ctrd" ]; then
        crictl rmp -f -a >/dev/null 2>&1
        kill "$ctrd" 2>/dev/null
        i=0
        while kill -0 "$ctrd" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$ctrd" 2>/dev/null
    fi
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = $$ ] && continue
        if { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -qF "$work"; then
            kill -9 "$pid" 2>/dev/null
        fi
    done
    [ -n "$holder" ] && kill "$holder" 2>/dev/null
    awk -v w="$work" '$5 ~ "^" w { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m"; done
    for h in /sys/fs/cgroup/*/"$tag"; do
        [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    for p in /var/lib/cni/results /var/lib/cni /run/containerd/s /run/containerd; do
        case " $existed " in *" $p "*) continue ;; esac
        [ -d "$p" ] && rmdir "$p" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The network namespace: containerd, CNI and crictl (for the streaming server) live in it.
unshare --net sleep infinity &
holder=$!
i=0
until [ "$(readlink /proc/$holder/ns/net 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "cri.sh: no network namespace" >&2; exit 1; }; sleep 0.05
done
innet="nsenter --net=/proc/$holder/ns/net"
$innet ip link set lo up

mkdir -p "$work/net.d" "$work/logs" "$work/run"
mount -t tmpfs -o mode=0700 berth-bench-cri "$work/run"
sed -e "s|@DIR@/state|$work/run/state|" -e "s|@DIR@/berth-root|$work/run/berth-root|" \
    -e "s|@DIR@/runc-root|$work/run/runc-root|" \
    -e "s|@DIR@|$work|g" -e "s|@BERTH@|$berth|g" -e "s|@RUNC@|$runc|g" \
    "$cri/containerd.toml" > "$work/containerd.toml"
sed -e "s|@DIR@|$work|g" -e "s|@NET@|$tag|g" \
    "$cri/10-berth-cri.conflist" > "$work/net.d/10-berth-cri.conflist"
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' \
    "$work/containerd.sock" "$work/containerd.sock" > "$work/crictl.yaml"
crictl() { $innet "$crictl_bin" --config "$work/crictl.yaml" "$@"; }

# Two more handlers, the same runtimes behind bench/timed-exec.c, for the second pass.
mkdir -p "$work/timed"
for h in berth runc; do
    eval real=\$$h
    cc -O2 -o "$work/timed/$h" -DREAL="\"$real\"" -DLOG="\"$work/timed/calls\"" "$here/bench/timed-exec.c"
    cat >> "$work/containerd.toml" <<EOF

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$h-timed]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$h-timed.options]
    BinaryName = "$work/timed/$h"
    Root = "$work/run/$h-root"
EOF
done

$innet containerd --config "$work/containerd.toml" > "$work/containerd.log" 2>&1 &
ctrd=$!
i=0
until crictl version >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 300 ] || { tail -20 "$work/containerd.log" >&2; exit 1; }; sleep 0.1
done

sh "$here/rootfs-fixtures/build-pause-image.sh" "$work/pause.tar" 2>/dev/null
sh "$here/rootfs-fixtures/build-image-tar.sh" "$work/busybox.tar" 2>/dev/null
for t in pause busybox; do
    ctr --address "$work/containerd.sock" -n k8s.io images import "$work/$t.tar" >/dev/null
done
printf '%s' '{"metadata":{"name":"bench"},"image":{"image":"docker.io/library/busybox:latest"},
"command":["sleep","3600"],"log_path":"bench.log","linux":{"security_context":{
"namespace_options":{"network":0,"pid":1,"ipc":0},"seccomp":{"profile_type":0}}}}' > "$work/container.json"

now() { date +%s%N; }
one() { # handler index -> "handler start_ns stop_ns" on stdout
    local h=$1 name=b-$1-$2 t0 t1 t2 pod ctr_id d
    mkdir -p "$work/logs/$name"
    sed -e "s|@NAME@|$name|g" -e "s|@UID@|uid-$name|g" -e "s|@LOGDIR@|$work/logs/$name|g" \
        -e "s|@CGROUP@|/$tag/$name|g" "$cri/pod.json" > "$work/$name.json"
    t0=$(now)
    pod=$(crictl runp --runtime "$h" "$work/$name.json")
    ctr_id=$(crictl create "$pod" "$work/container.json" "$work/$name.json")
    crictl start "$ctr_id" >/dev/null
    until [ "$(crictl inspect -o go-template --template '{{.status.state}}' "$ctr_id")" = CONTAINER_RUNNING ]; do
        [ $(($(now) - t0)) -lt 30000000000 ] || { echo "cri.sh: $name not RUNNING" >&2; exit 1; }
    done
    t1=$(now)
    crictl stopp "$pod" >/dev/null
    crictl rmp "$pod" >/dev/null
    t2=$(now)
    for d in /sys/fs/cgroup/*/"$tag/$name"; do [ -d "$d" ] && rmdir "$d"; done
    echo "$h $((t1 - t0)) $((t2 - t1)) $t1 $t2"
}

for h in berth runc; do one "$h" warmup > /dev/null; done
n=0
while [ $n -lt "$pods" ]; do
    one berth $n
    one runc $n
    n=$((n + 1))
done > "$work/times"
# Second pass: the runtime's own share of a pod stop, each call timed by the wrapper.
timed=$(( (pods + 1) / 2 ))
n=0
while [ $n -lt "$timed" ]; do
    one berth-timed $n
    one runc-timed $n
    n=$((n + 1))
done > "$work/times-timed"

echo "berth: $berth  pods per handler: $pods (crictl calls included, as kubelet pays them)" >&2
python3 - "$work/times" "$work/times-timed" "$work/timed/calls" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    h, start, stop = line.split()[:3]
    t.setdefault(h, {"start": [], "stop": []})
    t[h]["start"].append(int(start) / 1e6)
    t[h]["stop"].append(int(stop) / 1e6)
print(f"{'pod latency':<22} {'median ms':>10} {'mean ms':>9} {'vs runc':>8}")
for kind, label in (("start", "runp+create+start"), ("stop", "stopp+rmp")):
    base = statistics.median(t["runc"][kind])
    for h in ("berth", "runc"):
        xs = t[h][kind]
        med = statistics.median(xs)
        print(f"{label + '/' + h:<22} {med:>10.1f} {statistics.mean(xs):>9.1f} {med / base:>7.2f}x")

# The second pass: how much of stopp+rmp is the runtime's own calls (kill, kill --all,
# delete, delete --force for each container and the sandbox, as the shim makes them).
calls = [l.split() for l in open(sys.argv[3])]
own = {}
for line in open(sys.argv[2]):
    h, _, stop, t1, t2 = line.split()
    h = h.removesuffix("-timed")
    t1, t2 = int(t1), int(t2)
    rt = sum(int(c[1]) - int(c[0]) for c in calls if int(c[0]) >= t1 and int(c[1]) <= t2)
    own.setdefault(h, []).append((int(stop) / 1e6, rt / 1e6))
print()
print(f"{'stopp+rmp, timed calls':<22} {'median ms':>10} {'runtime ms':>10} {'rest ms':>8}")
rest = {}
for h in ("berth", "runc"):
    stop = statistics.median(s for s, _ in own[h])
    rt = statistics.median(r for _, r in own[h])
    rest[h] = statistics.median(s - r for s, r in own[h])
    print(f"{h:<22} {stop:>10.1f} {rt:>10.1f} {rest[h]:>8.1f}")
# Each kind of call, by its subcommand and flags (the global ones and ids left out).
kinds = {}
for line in open(sys.argv[2]):
    h, _, _, t1, t2 = line.split()
    h = h.removesuffix("-timed")
    for c in calls:
        if int(c[0]) >= int(t1) and int(c[1]) <= int(t2):
            args = c[3:]
            while args and args[0].startswith("--"):
                args = args[2:] if args[0] in ("--root", "--log", "--log-format") else args[1:]
            sub = " ".join(a for a in args[:-1] if a.startswith("-") or a.isdigit() or a.isupper())
            key = (h, (args[0] if args else "?") + (" " + sub if sub else ""))
            kinds.setdefault(key, []).append((int(c[1]) - int(c[0])) / 1e6)
print()
print(f"{'each call in stopp+rmp':<30} {'calls/pod':>9} {'median ms':>10}")
for (h, kind), xs in sorted(kinds.items()):
    print(f"{h + ' ' + kind:<30} {len(xs) / len(own[h]):>9.1f} {statistics.median(xs):>10.2f}")
runc_stop = statistics.median(s for s, _ in own["runc"])
print(f"a runtime costing 0 ms would land at {rest['runc'] / runc_stop:.2f}x runc's stopp+rmp")
PY
