#!/usr/bin/env bash
# Acknowledged writes per second under `appendonly yes` with `appendfsync always`: SET from 4,
# 16 and 64 clients (one command at a time each, -P 1), oxidis against redis-server in one
# run. Each reply waits for an fsync, so this measures how many clients' writes one fsync
# serves (group commit). The AOF directories are on the disk (under target/), not on a tmpfs.
# Each server is pinned to CPU 0 and redis-benchmark to CPU 1; rounds alternate A B A B and
# the median of each figure is kept (requests/s, and the server's CPU time per request).
# Usage: benches/fsync.sh [rounds] [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
requests=${2:-20000}
cargo build --release --quiet
source benches/lib.sh

work=$(mktemp -d -p target fsync-bench.XXXXXX)
redis_port=$(free_port)
oxidis_port=$(free_port)
aof=(--bind 127.0.0.1 --save '' --appendonly yes --appendfsync always)
mkdir "$work/redis" "$work/oxidis"
taskset -c 0 redis-server --port "$redis_port" --dir "$work/redis" "${aof[@]}" >/dev/null &
redis_pid=$!
taskset -c 0 target/release/oxidis --port "$oxidis_port" --dir "$work/oxidis" "${aof[@]}" >/dev/null 2>&1 &
oxidis_pid=$!
trap 'kill $redis_pid $oxidis_pid 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
wait_up "$redis_port"
wait_up "$oxidis_port"

# measure CLIENTS PORT PID -> "rps cpu_us_per_request"
measure() {
    rps_cpu "$3" "$requests" -p "$2" -c "$1" -t set
}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv="benches/results/fsync-$stamp.csv"
echo "clients,redis_rps,oxidis_rps,rps_ratio,redis_cpu_us_per_req,oxidis_cpu_us_per_req,cpu_ratio" >"$csv"
printf '%7s %10s %10s %6s %9s %9s %6s\n' clients redis_rps oxidis_rps ratio redis_us oxidis_us ratio
for c in 4 16 64; do
    r_rps=() r_cpu=() o_rps=() o_cpu=()
    for _ in $(seq "$rounds"); do
        read -r a b < <(measure "$c" "$redis_port" "$redis_pid"); r_rps+=("$a"); r_cpu+=("$b")
        read -r a b < <(measure "$c" "$oxidis_port" "$oxidis_pid"); o_rps+=("$a"); o_cpu+=("$b")
    done
    rr=$(median "${r_rps[@]}"); rc=$(median "${r_cpu[@]}")
    orps=$(median "${o_rps[@]}"); oc=$(median "${o_cpu[@]}")
    line=$(python3 -c "print(f'$c,{$rr:.0f},{$orps:.0f},{$orps/$rr:.2f},{$rc:.2f},{$oc:.2f},{$oc/$rc:.2f}')")
    echo "$line" >>"$csv"
    IFS=, read -r c1 c2 c3 c4 c5 c6 c7 <<<"$line"
    printf '%7s %10s %10s %6s %9s %9s %6s\n' "$c1" "$c2" "$c3" "$c4" "$c5" "$c6" "$c7"
done
echo "written to $csv"
