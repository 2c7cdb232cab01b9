#!/usr/bin/env bash
# Compares oxidis with redis-server on this machine, in one run.
# Each server is pinned to CPU 0 and redis-benchmark to CPU 1 (taskset), so the figures are
# per-core efficiency. For every test it records requests/s (as redis-benchmark reports them)
# and the server's own CPU time per request (user+sys from /proc/PID/stat before and after).
# Rounds alternate A B A B and the median of each figure is kept.
# Usage: benches/compare.sh [rounds] [requests]    Needs redis-server and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
requests=${2:-200000}
tests=(SET GET INCR MSET)
pipelines=(1 16)
cargo build --release --quiet
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
wait_up() { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.05; done; echo "server on $1 did not start" >&2; exit 1; }

redis_port=$(free_port)
oxidis_port=$(free_port)
taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null &
redis_pid=$!
taskset -c 0 target/release/oxidis --port "$oxidis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
oxidis_pid=$!
trap 'kill $redis_pid $oxidis_pid 2>/dev/null || true' EXIT
wait_up "$redis_port"
wait_up "$oxidis_port"
sleep 0.5
redis_rss=$(rss_kb $redis_pid)
oxidis_rss=$(rss_kb $oxidis_pid)
hz=$(getconf CLK_TCK)

# measure PORT PID TEST PIPELINE -> "rps cpu_us_per_request"
# Pipelined runs send proportionally more requests, so CPU ticks (10 ms) stay a small error.
measure() {
    local before after rps n=$((requests * $4 / 2 > requests ? requests * $4 / 2 : requests))
    before=$(cpu_ticks "$2")
    rps=$(taskset -c 1 redis-benchmark -p "$1" -t "$3" -n "$n" -c 50 -P "$4" -q --csv \
        | awk -F, 'NR>1 {gsub(/"/,"",$2); print $2; exit}')
    after=$(cpu_ticks "$2")
    python3 -c "print($rps, ($after-$before)*1e6/$hz/$n)"
}
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv="benches/results/compare-$stamp.csv"
echo "test,pipeline,redis_rps,oxidis_rps,rps_ratio,redis_cpu_us_per_req,oxidis_cpu_us_per_req,cpu_ratio" >"$csv"
printf '%-6s %3s %12s %12s %7s %10s %10s %7s\n' test P redis_rps oxidis_rps ratio redis_us oxidis_us ratio
for t in "${tests[@]}"; do
    for p in "${pipelines[@]}"; do
        r_rps=(); r_cpu=(); o_rps=(); o_cpu=()
        for _ in $(seq "$rounds"); do
            read -r a b < <(measure "$redis_port" $redis_pid "$t" "$p"); r_rps+=("$a"); r_cpu+=("$b")
            read -r a b < <(measure "$oxidis_port" $oxidis_pid "$t" "$p"); o_rps+=("$a"); o_cpu+=("$b")
        done
        rr=$(median "${r_rps[@]}"); rc=$(median "${r_cpu[@]}")
        orps=$(median "${o_rps[@]}"); oc=$(median "${o_cpu[@]}")
        line=$(python3 -c "print(f'$t,$p,{$rr:.0f},{$orps:.0f},{$orps/$rr:.2f},{$rc:.3f},{$oc:.3f},{$oc/$rc:.2f}')")
        echo "$line" >>"$csv"
        IFS=, read -r c1 c2 c3 c4 c5 c6 c7 c8 <<<"$line"
        printf '%-6s %3s %12s %12s %7s %10s %10s %7s\n' "$c1" "$c2" "$c3" "$c4" "$c5" "$c6" "$c7" "$c8"
    done
done
echo "empty-server RSS: redis ${redis_rss} kB, oxidis ${oxidis_rss} kB, ratio $(python3 -c "print(f'{$oxidis_rss/$redis_rss:.2f}')")"
echo "rss,,${redis_rss},${oxidis_rss},,,," >>"$csv"
echo "written to $csv"
