#!/usr/bin/env bash
# Eviction, oxidis against redis-server 7.0.15 in the same run, each server pinned to CPU 0 and
# its client to CPU 1:
# - SET_EVICT: SET of 100-byte values on keys drawn from 1,000,000 at -P 16 under allkeys-lru
#   with maxmemory 64 MB, about half of what those keys take (so every SET evicts); filled
#   once before the measured run.
# - GET_LFU: GET at -P 16 of keys drawn from 100,000, all present, under allkeys-lfu (what
#   the LFU counter costs a read).
# - ZIPF_LRU and ZIPF_LFU: the hit ratio of a read-through cache (benches/zipf.py) with keys
#   drawn from 1,000,000 by a Zipf distribution of exponent 1.0, under maxmemory 16 MB (about
#   a tenth of the keys fit).
# CPU rows print requests/s and server CPU µs per request, medians of ROUNDS runs; results
# go to benches/results/eviction-<time>.csv.
# Usage: benches/eviction.sh [rounds] [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
n=${2:-2000000}
zipf_requests=${ZIPF_REQUESTS:-2000000}
csv=benches/results/eviction-$(date -u +%Y%m%dT%H%M%SZ).csv
cargo build --release --quiet
source benches/lib.sh
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# start SERVER ARGS... -> "port pid" of a fresh server pinned to CPU 0
start() {
    local server=$1 port
    shift
    port=$(free_port)
    if [ "$server" = redis ]; then
        taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save '' "$@" >/dev/null &
    else
        taskset -c 0 target/release/oxidis --port "$port" --bind 127.0.0.1 --save '' "$@" >/dev/null 2>&1 &
    fi
    echo "$port $!"
}

stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

# cpu_row SERVER TEST -> "rps cpu_us" medians over the rounds, each on a fresh server
cpu_row() {
    local server=$1 test=$2 port pid rates=() cpus=()
    for _ in $(seq "$rounds"); do
        if [ "$test" = SET_EVICT ]; then
            read -r port pid < <(start "$server" --maxmemory 64mb --maxmemory-policy allkeys-lru)
            wait_up "$port"
            taskset -c 1 redis-benchmark -p "$port" -n 1000000 -r 1000000 -d 100 -P 16 -t set -q >/dev/null
            read -r rps cpu < <(rps_cpu "$pid" "$n" -p "$port" -r 1000000 -d 100 -P 16 -t set)
        else
            read -r port pid < <(start "$server" --maxmemory-policy allkeys-lfu)
            wait_up "$port"
            taskset -c 1 redis-benchmark -p "$port" -n 300000 -r 100000 -d 100 -P 16 -t set -q >/dev/null
            read -r rps cpu < <(rps_cpu "$pid" "$n" -p "$port" -r 100000 -P 16 -t get)
        fi
        rates+=("$rps"); cpus+=("$cpu")
        stop "$pid"
    done
    echo "$(median "${rates[@]}") $(median "${cpus[@]}")"
}

# zipf_row SERVER POLICY -> "hit_ratio keys_held"
zipf_row() {
    local port pid out
    read -r port pid < <(start "$1" --maxmemory 16mb --maxmemory-policy "$2")
    wait_up "$port"
    out=$(taskset -c 1 python3 benches/zipf.py "$port" 1000000 "$zipf_requests")
    stop "$pid"
    echo "$out"
}

echo "test,redis_rps,oxidis_rps,redis_cpu_us_per_req,oxidis_cpu_us_per_req,cpu_ratio" >"$csv"
printf '%-10s %12s %12s %10s %10s %7s\n' test redis_rps oxidis_rps redis_us oxidis_us ratio
for test in SET_EVICT GET_LFU; do
    read -r r_rps r_cpu < <(cpu_row redis "$test")
    read -r o_rps o_cpu < <(cpu_row oxidis "$test")
    ratio=$(python3 -c "print(f'{$o_cpu/$r_cpu:.2f}')")
    printf '%-10s %12.0f %12.0f %10.3f %10.3f %7s\n' "$test" "$r_rps" "$o_rps" "$r_cpu" "$o_cpu" "$ratio"
    echo "$test,$r_rps,$o_rps,$r_cpu,$o_cpu,$ratio" >>"$csv"
done
echo "test,redis_hit_ratio,oxidis_hit_ratio,redis_keys_held,oxidis_keys_held" >>"$csv"
for policy in allkeys-lru allkeys-lfu; do
    read -r r_hits r_held < <(zipf_row redis "$policy")
    read -r o_hits o_held < <(zipf_row oxidis "$policy")
    echo "zipf $policy: hit ratio redis $r_hits ($r_held keys held), oxidis $o_hits ($o_held keys held)"
    echo "ZIPF_${policy#allkeys-},$r_hits,$o_hits,$r_held,$o_held" >>"$csv"
done
echo "written to $csv"
