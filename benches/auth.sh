#!/usr/bin/env bash
# What authentication costs: SET and GET on oxidis with no password, with `requirepass`, as an
# ACL user with every right, and as an ACL user limited to `~key:* +@read +@write`, in one run.
# Each server is pinned to CPU 0 and redis-benchmark to CPU 1. Rounds alternate between the
# servers (each round starting with another) and the median of each figure is kept; ratios
# are against the open server.
# Prints requests/s and the server's CPU time per request (from /proc/PID/stat).
# Usage: benches/auth.sh [rounds] [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
requests=${2:-200000}
cargo build --release --quiet
source benches/lib.sh

modes=(open requirepass acl_all acl_keys)
declare -A port pid auth
for mode in "${modes[@]}"; do
    port[$mode]=$(free_port)
    args=(--port "${port[$mode]}" --bind 127.0.0.1 --save '' --appendonly no)
    case $mode in
        open) auth[$mode]="" ;;
        requirepass)
            args+=(--requirepass secret)
            auth[$mode]="-a secret" ;;
        acl_all)
            args+=(--user "bench on >secret ~* &* +@all")
            auth[$mode]="--user bench -a secret" ;;
        acl_keys)
            args+=(--user "bench on >secret ~key:* +@read +@write")
            auth[$mode]="--user bench -a secret" ;;
    esac
    taskset -c 0 target/release/oxidis "${args[@]}" >/dev/null 2>&1 &
    pid[$mode]=$!
done
trap 'kill ${pid[*]} 2>/dev/null || true' EXIT
for mode in "${modes[@]}"; do
    wait_up "${port[$mode]}" ${auth[$mode]}
done

# measure MODE TEST PIPELINE -> "rps cpu_us_per_request"
measure() {
    local mode=$1 t=$2 p=$3
    local n=$((requests * p / 2 > requests ? requests * p / 2 : requests))
    rps_cpu "${pid[$mode]}" "$n" -p "${port[$mode]}" ${auth[$mode]} -c 50 -P "$p" -t "$t"
}

printf '%-6s %3s %-12s %12s %8s %10s %8s\n' test P mode rps ratio cpu_us ratio
for t in SET GET; do
    for p in 1 16; do
        declare -A results=()
        for round in $(seq "$rounds"); do
            # Each round starts with a different server, so no mode always runs first.
            for i in "${!modes[@]}"; do
                mode=${modes[$(((i + round) % ${#modes[@]}))]}
                results[$mode]+="$(measure "$mode" "$t" "$p");"
            done
        done
        python3 - "$t" "$p" "${modes[@]}" <<PY
import statistics, sys
t, p, modes = sys.argv[1], sys.argv[2], sys.argv[3:]
raw = {$(for m in "${modes[@]}"; do printf '"%s": "%s",' "$m" "${results[$m]}"; done)}
med = {}
for m in modes:
    runs = [tuple(map(float, r.split())) for r in raw[m].split(";") if r]
    med[m] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
for m in modes:
    rps, cpu = med[m]
    print(f"{t:<6} {p:>3} {m:<12} {rps:12.0f} {rps / med['open'][0]:8.3f} {cpu:10.3f} {cpu / med['open'][1]:8.3f}")
PY
    done
done
