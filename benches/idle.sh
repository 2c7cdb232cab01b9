#!/usr/bin/env bash
# Idle connections, oxidis against redis-server in one run: 10,000 connections (CONNS) that
# each sent one PING, then stay idle. Reports the growth of the server's anonymous memory per
# connection once both servers had 15 s to give back what idle clients do not need (query and
# reply buffers; the allocator's free pages), and SET and GET throughput of 50 busy clients
# (redis-benchmark -P 1 and -P 16) while the idle ones stay connected, with the server's CPU
# time per request. Each server is pinned to CPU 0 and the clients to CPU 1. Needs an open
# files limit above CONNS + 100 for this shell (the servers raise their own).
# Usage: benches/idle.sh [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200000}
conns=${CONNS:-10000}
cargo build --release --quiet
source benches/lib.sh
anon_kb() { awk '/^Anonymous:/ {print $2}' "/proc/$1/smaps_rollup"; }

redis_port=$(free_port)
oxidis_port=$(free_port)
common=(--bind 127.0.0.1 --save '' --appendonly no --maxclients $((conns + 1000)))
taskset -c 0 redis-server --port "$redis_port" "${common[@]}" >/dev/null &
redis_pid=$!
taskset -c 0 target/release/oxidis --port "$oxidis_port" "${common[@]}" >/dev/null 2>&1 &
oxidis_pid=$!
holders=()
trap 'kill $redis_pid $oxidis_pid "${holders[@]}" 2>/dev/null || true' EXIT
wait_up "$redis_port"
wait_up "$oxidis_port"
sleep 0.5

# hold PORT -> connects CONNS idle clients, prints "ready" once all got their PONG, then
# keeps them until killed.
hold() {
    taskset -c 1 python3 - "$1" "$conns" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PING\r\n")
    socks.append(s)
for s in socks:
    assert s.recv(16) == b"+PONG\r\n"
print("ready", flush=True)
time.sleep(3600)
PY
}

declare -A before
for name in redis oxidis; do
    port_var=${name}_port pid_var=${name}_pid
    before[$name]=$(anon_kb "${!pid_var}")
    exec {fd}< <(hold "${!port_var}")
    holders+=($!)
    read -r -u "$fd" ready
done
sleep 15
r_per=$(( ($(anon_kb $redis_pid) - ${before[redis]}) * 1024 / conns ))
o_per=$(( ($(anon_kb $oxidis_pid) - ${before[oxidis]}) * 1024 / conns ))

stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv="benches/results/idle-$stamp.csv"
echo "test,pipeline,redis,oxidis,ratio,redis_cpu_us_per_req,oxidis_cpu_us_per_req,cpu_ratio" >"$csv"
echo "idle_conn_bytes,,$r_per,$o_per,$(python3 -c "print(f'{$o_per/$r_per:.2f}')"),,," >>"$csv"
echo "anonymous memory per idle connection ($conns): redis $r_per B, oxidis $o_per B"

# measure TEST PIPELINE PORT PID -> "rps cpu_us_per_request"
measure() {
    local t=$1 p=$2 port=$3 pid=$4
    local n=$((requests * p / 2 > requests ? requests * p / 2 : requests))
    rps_cpu "$pid" "$n" -p "$port" -c 50 -P "$p" -t "$t"
}
printf '%-5s %3s %10s %10s %6s %9s %9s %6s\n' test P redis_rps oxidis_rps ratio redis_us oxidis_us ratio
for t in SET GET; do
    for p in 1 16; do
        read -r rr rc < <(measure "$t" "$p" "$redis_port" "$redis_pid")
        read -r orps oc < <(measure "$t" "$p" "$oxidis_port" "$oxidis_pid")
        line=$(python3 -c "print(f'${t}_IDLE$conns,$p,{$rr:.0f},{$orps:.0f},{$orps/$rr:.2f},{$rc:.3f},{$oc:.3f},{$oc/$rc:.2f}')")
        echo "$line" >>"$csv"
        IFS=, read -r c1 c2 c3 c4 c5 c6 c7 c8 <<<"$line"
        printf '%-5s %3s %10s %10s %6s %9s %9s %6s\n' "$t" "$c2" "$c3" "$c4" "$c5" "$c6" "$c7" "$c8"
    done
done
echo "written to $csv"
