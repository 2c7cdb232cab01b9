#!/usr/bin/env bash
# Runs units of Redis 7.0.15's own Tcl test suite against a fresh oxidis per unit.
# The suite comes from Debian's redis source package (deb-src) and is cached under target/.
# Usage: tests/redis-suite/run.sh [unit ...]   (default: the units listed in units.txt)
# A unit runs against one oxidis started here (external mode), or, when units.txt marks it
# "spawn" (units Redis tags external:skip), the suite starts oxidis itself as src/redis-server
# for each of its server blocks. Tests tagged "slow" are left out, except in units marked
# "slow" (unit/querybuf is tagged slow as a whole; its two tests take three seconds). Units
# marked "tls" run with the suite's --tls (clients and servers over TLS, with the suite's own
# test certificates).
# Prints one line per unit and a final "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache="$root/target/redis-suite"
suite="$cache/redis-7.0.15/tests"
bin="$root/target/release/oxidis"

fetch_suite() {
    [ -x "$cache/redis-7.0.15/runtest" ] && return
    if ! grep -qs "deb-src" /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null; then
        sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
        apt-get update -q >/dev/null
    fi
    mkdir -p "$cache"
    (cd "$cache" && apt-get source -q redis >/dev/null 2>&1)
    [ -x "$cache/redis-7.0.15/runtest" ] || { echo "could not fetch the Redis 7.0.15 test suite" >&2; exit 2; }
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

[ -x "$bin" ] || (cd "$root" && cargo build --release)
fetch_suite
units=("$@")
[ ${#units[@]} -gt 0 ] || mapfile -t units < <(grep -v '^#' "$here/units.txt" | grep -v '^$')
# The binaries the suite starts in spawn mode.
ln -sf "$bin" "$cache/redis-7.0.15/src/redis-server"
ln -sf "$(command -v redis-cli)" "$cache/redis-7.0.15/src/redis-cli"
ln -sf "$(command -v redis-benchmark)" "$cache/redis-7.0.15/src/redis-benchmark"
ln -sf "$(command -v redis-check-aof)" "$cache/redis-7.0.15/src/redis-check-aof"
ln -sf "$(command -v redis-check-rdb)" "$cache/redis-7.0.15/src/redis-check-rdb"

# Tests waiting for a later command family, without comments (runtest reads names verbatim).
skipfile="$cache/pending.txt"
grep -v '^#' "$here/pending.txt" | grep -v '^$' >"$skipfile"

total_ok=0
total_err=0
total_pending=0
logdir="$root/target/redis-suite/logs"
mkdir -p "$logdir"
for entry in "${units[@]}"; do
    read -r unit modes <<<"$entry"
    tags=(--tags -slow)
    [[ " $modes " == *" slow "* ]] && tags=()
    tls=()
    if [[ " $modes " == *" tls "* ]]; then
        tls=(--tls)
        [ -f "$suite/tls/ca.crt" ] || (cd "$suite/.." && ./utils/gen-test-certs.sh >/dev/null 2>&1)
    fi
    log="$logdir/$(echo "$unit" | tr / _).log"
    target=()
    pid=
    if [[ " $modes " != *" spawn "* ]]; then
        port=$(free_port)
        # A fresh directory per unit: tests that SAVE or DEBUG RELOAD write their dump there.
        workdir=$(mktemp -d)
        "$bin" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --enable-debug-command yes \
            --dir "$workdir" --logfile "$log.server" &
        pid=$!
        for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
        target=(--host 127.0.0.1 --port "$port")
    fi
    (cd "$suite/.." && timeout 900 ./runtest "${target[@]}" "${tls[@]}" --single "$unit" \
        --durable "${tags[@]}" --timeout 120 --clients 1 \
        --skipfile "$skipfile") 2>&1 \
        | sed 's/\x1b\[[0-9;]*m//g' >"$log" || true
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        rm -rf "$workdir"
    fi
    ok=$(grep -c '^\[ok\]' "$log" || true)
    err=$(grep -cE '^\[(err|exception|TIMEOUT)\]' "$log" || true)
    # A unit that ran nothing or died part-way counts as a failure.
    grep -q 'All tests passed\|\[ok\]' "$log" || err=$((err + 1))
    pending=$(grep -c '^\[skip\]' "$log" || true)
    echo "$unit: $ok passed, $err failed, $pending pending (see pending.txt)"
    grep -E '^\[(err|exception|TIMEOUT)\]' "$log" | sed 's/^/    /' || true
    total_ok=$((total_ok + ok))
    total_err=$((total_err + err))
    total_pending=$((total_pending + pending))
done
echo "redis-suite: $total_ok passed, $total_err failed, $total_pending skipped"
[ "$total_err" -eq 0 ]
