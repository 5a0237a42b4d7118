#!/bin/sh
# End-to-end container start under real engines: `docker run --rm` and `ctr run --rm` of a busybox
# `true`, with berth, runc and crun as the OCI runtime. Prints hyperfine medians and the ratios
# to runc. Starts its own containerd and dockerd with all state in a temp dir and tears them
# down afterwards (daemons, mounts, cgroups, and the few host paths these engines always make).
#
#   bench/engines.sh [RUNS]       (root; containerd, docker.io, hyperfine, runc, crun)
#
# BERTH_BIN picks the berth binary (default: a release build in $CARGO_TARGET_DIR or
# target-bench, built if missing). A runtime whose first run fails is reported and left out.
set -eu
runs=${1:-${RUNS:-20}}
here=$(cd "$(dirname "$0")/.." && pwd)
engines=$here/runtime-tests/engines

for b in containerd ctr dockerd docker hyperfine python3; do
    command -v "$b" >/dev/null || { echo "engines.sh: $b missing (make deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "engines.sh: needs root" >&2; exit 1; }

berth=${BERTH_BIN:-}
if [ -z "$berth" ]; then
    target=${CARGO_TARGET_DIR:-$here/target-bench}
    berth=$target/x86_64-unknown-linux-gnu/release/berth
    if [ ! -x "$berth" ]; then
        echo "building berth (release)..." >&2
        (cd "$here" && CARGO_TARGET_DIR=$target cargo build -q --release -p berth)
    fi
fi

work=$(mktemp -d /tmp/berth-bench-engines.XXXXXX)
tag=berth-bench-engines-$$
existed=""
for p in /run/containerd/s /run/containerd /run/docker/plugins /run/docker /etc/docker/key.json; do
    [ -e "$p" ] && existed="$existed $p"
done

cleanup() {
    set +e
    for pidfile in "$work/docker.pid" "$work/containerd.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null
    done
    # Anything still running from the work dir (shims, containers).
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
    for h in /sys/fs/cgroup/*/"$tag"; do
        [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    for p in /etc/docker/key.json /run/docker/plugins /run/docker /run/containerd/s /run/containerd; do
        case " $existed " in *" $p "*) continue ;; esac
        if [ -d "$p" ]; then rmdir "$p" 2>/dev/null; else rm -f "$p"; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sed "s|@DIR@|$work/containerd|g" "$engines/containerd.toml" > "$work/containerd.toml"
containerd --config "$work/containerd.toml" > "$work/containerd.log" 2>&1 &
echo $! > "$work/containerd.pid"
sock=$work/containerd/containerd.sock
ctr="ctr --address $sock --namespace bench"
i=0
until $ctr version >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 100 ] || { cat "$work/containerd.log" >&2; exit 1; }; sleep 0.1
done

runtimes="berth=$berth runc=$(command -v runc || echo /usr/sbin/runc) crun=$(command -v crun || echo /usr/bin/crun)"
addrt=""
for r in $runtimes; do addrt="$addrt --add-runtime rt-$r"; done
sed "s|@DIR@|$work/docker|g" "$engines/daemon.json" > "$work/daemon.json"
# shellcheck disable=SC2086
dockerd --config-file "$work/daemon.json" --data-root "$work/docker/data" \
    --exec-root "$work/docker/exec" --pidfile "$work/docker/docker.pid" \
    -H "unix://$work/docker.sock" --containerd "$sock" --cgroup-parent "/$tag" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --storage-driver=overlay2 --default-ulimit nofile=1024:1024 $addrt \
    > "$work/dockerd.log" 2>&1 &
echo $! > "$work/docker.pid"
docker="docker -H unix://$work/docker.sock"
i=0
until $docker version >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 300 ] || { tail -20 "$work/dockerd.log" >&2; exit 1; }; sleep 0.1
done

sh "$here/rootfs-fixtures/build-image-tar.sh" "$work/busybox.tar" 2>/dev/null
$docker load -q -i "$work/busybox.tar" >/dev/null
$ctr images import "$work/busybox.tar" >/dev/null
image=docker.io/library/busybox:latest

set --
for r in $runtimes; do
    name=${r%%=*}; bin=${r#*=}
    d="$docker run --rm --runtime rt-$name --network none busybox true"
    c="$ctr run --rm --runc-binary $bin --runc-root $work/runc-root --fifo-dir $work/fifo --cgroup /$tag/b-$name $image b-$name true"
    for kind in docker ctr; do
        if [ $kind = docker ]; then cmd=$d; else cmd=$c; fi
        if err=$(timeout 60 $cmd 2>&1); then
            set -- "$@" -n "$kind/$name" "$cmd"
        else
            echo "SKIPPED $kind/$name: first run failed: $(echo "$err" | tail -3)" >&2
        fi
    done
done
[ $# -gt 0 ] || { echo "engines.sh: no runtime worked" >&2; exit 1; }

echo "berth: $berth" >&2
hyperfine -N --runs "$runs" --warmup 2 --export-json "$work/h.json" "$@" >&2

python3 - "$work/h.json" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
print(f"{'engine/runtime':<16} {'median ms':>10} {'mean ms':>9} {'vs runc':>8}")
for kind in ("docker", "ctr"):
    base = res.get(f"{kind}/runc")
    for name in ("berth", "runc", "crun"):
        r = res.get(f"{kind}/{name}")
        if r is None:
            print(f"{kind + '/' + name:<16} {'failed':>10}")
            continue
        ratio = f"{r['median'] / base['median']:.2f}x" if base else "-"
        print(f"{kind + '/' + name:<16} {r['median'] * 1e3:>10.1f} {r['mean'] * 1e3:>9.1f} {ratio:>8}")
PY
