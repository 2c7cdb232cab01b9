#!/usr/bin/env bash
# Replication costs, oxidis against redis-server 7.0.15 in one run, each master with one
# replica of its own kind. Masters are pinned to CPU 0; replicas and redis-benchmark share
# CPU 1.
# - SET and LPUSH at -P 16 with the replica attached: requests/s, the master's CPU time per
#   request and the replica's CPU time per applied write (rounds alternate, medians kept);
# - a full sync of 1,000,000 keys (DEBUG POPULATE) to a replica started afterwards: the time
#   until it is online, and the master's peak RSS meanwhile (sampled every 10 ms).
# Usage: benches/replica.sh [rounds] [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
requests=${2:-2000000}
cargo build --release --quiet
source benches/lib.sh
work=$(mktemp -d)
# Servers are started in subshells (`< <(start ...)`): their pids go to a file.
trap 'kill $(cat "$work/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

# start NAME CPU BINARY ARGS... -> "port pid" of a server started in its own directory
start() {
    local name=$1 cpu=$2 binary=$3 port
    shift 3
    port=$(free_port)
    mkdir -p "$work/$name"
    taskset -c "$cpu" "$binary" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$work/$name" --enable-debug-command yes --repl-diskless-sync-delay 0 "$@" \
        >"$work/$name.log" 2>&1 &
    local pid=$!
    echo "$pid" >>"$work/pids"
    wait_up "$port"
    echo "$port $pid"
}

# in_sync MASTER_PORT REPLICA_PORT -> returns once the replica applied all the master sent
in_sync() {
    local m r
    for _ in $(seq 600); do
        m=$(redis-cli -p "$1" info replication | awk -F: '/^master_repl_offset/ {print $2+0}')
        r=$(redis-cli -p "$2" info replication | awk -F: '/^slave_repl_offset/ {print $2+0}')
        [ "$m" = "$r" ] && [ "$(redis-cli -p "$2" info replication | grep -c 'master_link_status:up')" = 1 ] && return
        sleep 0.05
    done
    echo "replica on $2 did not catch up" >&2
    exit 1
}

read -r rm_port rm_pid < <(start redis-master 0 redis-server)
read -r rr_port rr_pid < <(start redis-replica 1 redis-server --replicaof 127.0.0.1 "$rm_port")
read -r om_port om_pid < <(start oxidis-master 0 target/release/oxidis)
read -r or_port or_pid < <(start oxidis-replica 1 target/release/oxidis --replicaof 127.0.0.1 "$om_port")
in_sync "$rm_port" "$rr_port"
in_sync "$om_port" "$or_port"

csv=benches/results/replica-$(date -u +%Y%m%dT%H%M%SZ).csv
echo "test,pipeline,redis_rps,oxidis_rps,rps_ratio,redis_master_us,oxidis_master_us,master_cpu_ratio,redis_replica_us,oxidis_replica_us,replica_cpu_ratio" >"$csv"
printf '%-8s %3s %10s %10s %6s %9s %9s %6s %9s %9s %6s\n' test P redis oxidis ratio r_mast o_mast ratio r_repl o_repl ratio

# write_round MASTER_PORT MASTER_PID REPLICA_PORT REPLICA_PID TEST -> "rps master_us replica_us"
write_round() {
    local rps m_cpu r_before r_after
    redis-cli -p "$1" flushall >/dev/null
    in_sync "$1" "$3"
    r_before=$(cpu_us "$4")
    read -r rps m_cpu < <(rps_cpu "$2" "$requests" -p "$1" -c 50 -P 16 -r 100000 -t "$5")
    in_sync "$1" "$3"
    r_after=$(cpu_us "$4")
    python3 -c "print($rps, $m_cpu, ($r_after-$r_before)/$requests)"
}

for t in SET LPUSH; do
    r_rps=(); r_m=(); r_r=(); o_rps=(); o_m=(); o_r=()
    for _ in $(seq "$rounds"); do
        read -r a b c < <(write_round "$rm_port" "$rm_pid" "$rr_port" "$rr_pid" "$t"); r_rps+=("$a"); r_m+=("$b"); r_r+=("$c")
        read -r a b c < <(write_round "$om_port" "$om_pid" "$or_port" "$or_pid" "$t"); o_rps+=("$a"); o_m+=("$b"); o_r+=("$c")
    done
    line=$(python3 -c "
rr, orr = $(median "${r_rps[@]}"), $(median "${o_rps[@]}")
rm, om = $(median "${r_m[@]}"), $(median "${o_m[@]}")
rp, op = $(median "${r_r[@]}"), $(median "${o_r[@]}")
print(f'$t,16,{rr:.0f},{orr:.0f},{orr/rr:.2f},{rm:.3f},{om:.3f},{om/rm:.2f},{rp:.3f},{op:.3f},{op/rp:.2f}')")
    echo "$line" >>"$csv"
    IFS=, read -r c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 c11 <<<"$line"
    printf '%-8s %3s %10s %10s %6s %9s %9s %6s %9s %9s %6s\n' "$c1" "$c2" "$c3" "$c4" "$c5" "$c6" "$c7" "$c8" "$c9" "$c10" "$c11"
done

# full_sync NAME MASTER_PORT MASTER_PID BINARY -> "seconds peak_rss_kb" of a new replica's sync
full_sync() {
    local name=$1 port=$2 pid=$3 binary=$4 started peak rss r_port r_pid
    redis-cli -p "$port" flushall >/dev/null
    redis-cli -p "$port" debug populate 1000000 >/dev/null
    peak=$(rss_kb "$pid")
    started=$(date +%s.%N)
    read -r r_port r_pid < <(start "$name" 1 "$binary" --replicaof 127.0.0.1 "$port")
    while ! redis-cli -p "$r_port" info replication | grep -q 'master_link_status:up'; do
        rss=$(rss_kb "$pid")
        [ "$rss" -gt "$peak" ] && peak=$rss
        sleep 0.01
    done
    python3 -c "print(f'{$(date +%s.%N) - $started:.2f}', $peak)"
    kill "$r_pid"
}
read -r r_secs r_peak < <(full_sync redis-sync "$rm_port" "$rm_pid" redis-server)
read -r o_secs o_peak < <(full_sync oxidis-sync "$om_port" "$om_pid" target/release/oxidis)
echo "full sync of 1,000,000 keys: redis ${r_secs} s (master peak RSS ${r_peak} kB), oxidis ${o_secs} s (${o_peak} kB)"
echo "full_sync_1m_seconds,,${r_secs},${o_secs},,,,,,," >>"$csv"
echo "full_sync_1m_master_peak_rss_kb,,${r_peak},${o_peak},,,,,,," >>"$csv"
echo "written to $csv"
