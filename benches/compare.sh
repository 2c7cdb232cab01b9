#!/usr/bin/env bash
# Compares oxidis with redis-server on this machine, in one run.
# Each server is pinned to CPU 0 and redis-benchmark to CPU 1 (taskset), so the figures are
# per-core efficiency. For every test it records requests/s (as redis-benchmark reports them)
# and the server's own CPU time per request (user+sys from /proc/PID/stat before and after).
# Rounds alternate A B A B and the median of each figure is kept.
# Every redis-benchmark test runs in three variants (VARIANTS, default all): `base` (3-byte
# values, one key), `1KB` (1024-byte values) and `rand` (keys drawn from 100,000 with -r).
# EVALSHA rows (SCRIPTS, default all) run a read, a counter and a lock script by digest.
# Bitmap, HyperLogLog and geo rows (FAMILIES, default all) read data benches/families_setup.py
# writes beforehand: BITCOUNT of a 1 MB bitmap, BITOP AND of two, PFADD of 10 random elements,
# PFCOUNT of one key (its cached count) and of three (a merge), GEOADD of random points, and
# GEOSEARCH of a 2 km radius among 100,000 points, nearest first; stream rows: XADD of 3 fields
# with a generated ID, the same with MAXLEN ~ 1000, and XRANGE of 100 entries of a 1,000-entry
# stream. STREAM_GROUP rows (STREAMS, default on) read and acknowledge entries through consumer
# groups, one XREADGROUP + XACK pair per request (benches/stream_group.py).
# Usage: benches/compare.sh [rounds] [requests]    Needs redis-server and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
requests=${2:-200000}
tests=(${TESTS:-SET GET INCR MSET LPUSH RPUSH LPOP RPOP LRANGE_100 LRANGE_600 HSET SADD SPOP ZADD ZPOPMIN ZRANGE_100})
variants=(${VARIANTS:-base 1KB rand})
# Lua scripts run by EVALSHA (SCRIPTS="" leaves them out).
scripts=(${SCRIPTS-EVALSHA_GET EVALSHA_INCR EVALSHA_LOCK})
families=(${FAMILIES-BITCOUNT_1MB BITOP_AND_1MB PFADD_10 PFCOUNT_1 PFCOUNT_3 GEOADD GEOSEARCH_100K XADD XADD_MAXLEN_1000 XRANGE_100})
streams=${STREAMS-on}
pipelines=(1 16)
cargo build --release --quiet
source benches/lib.sh

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

# bench PORT N PIPELINE ARGS... -> "requests/s p99_us" of one redis-benchmark run
bench() {
    local port=$1 n=$2 p=$3
    shift 3
    taskset -c 1 redis-benchmark -p "$port" -n "$n" -c 50 -P "$p" -q --csv "$@" \
        | awk -F, 'NR>1 {gsub(/"/,""); print $2, $7 * 1000; exit}'
}

# variant_args VARIANT -> the redis-benchmark options of a variant
variant_args() {
    case $1 in
        base) ;;
        1KB) echo -d 1024 ;;
        rand) echo -r 100000 ;;
    esac
}

# measure TEST PIPELINE VARIANT PORT PID -> "rps cpu_us_per_request p99_us"
# Pipelined runs send proportionally more requests, so each run lasts about as long; the range
# tests send fewer.
# Pops get a list or sorted set filled beforehand, LRANGE_100 and LRANGE_600 a 600-element
# list and ZRANGE_100 a sorted set of about 1000 members, outside the measurement.
measure() {
    local t=$1 p=$2 port=$4 pid=$5 before after rps p99
    local extra=($(variant_args "$3"))
    local n=$((requests * p / 2 > requests ? requests * p / 2 : requests))
    # Range replies are big: fewer of them take as long (600 KB each for LRANGE_600 of 1 KB
    # values; the full count would run for an hour).
    case $t in LRANGE_600) n=$((n / 4)) ;; esac
    case $t-$3 in LRANGE_*-1KB) n=$((n / 10)) ;; esac
    local args=(-t "$t")
    redis-cli -p "$port" del mylist myzset >/dev/null
    case $t in
        LPOP|RPOP) bench "$port" "$n" 16 "${extra[@]}" -t lpush >/dev/null ;;
        LRANGE_100|LRANGE_600)
            bench "$port" 600 1 "${extra[@]}" -t lpush >/dev/null
            args=(lrange mylist 0 $((${t#LRANGE_} - 1))) ;;
        ZPOPMIN) bench "$port" "$n" 16 -r 1000000000 -t zadd >/dev/null ;;
        ZRANGE_100)
            bench "$port" 1000 1 -r 1000000000 -t zadd >/dev/null
            args=(zrange myzset 0 99) ;;
    esac
    before=$(cpu_us "$pid")
    read -r rps p99 < <(bench "$port" "$n" "$p" "${extra[@]}" "${args[@]}")
    after=$(cpu_us "$pid")
    python3 -c "print($rps, ($after-$before)/$n, $p99)"
}

# script_body NAME -> the Lua of an EVALSHA row: a read, a counter, and a lock taken and
# released (SET NX PX, then the owner check and DEL that redis-py's Lock.release runs).
script_body() {
    case $1 in
        EVALSHA_GET) echo "return redis.call('GET', KEYS[1])" ;;
        EVALSHA_INCR) echo "return redis.call('INCR', KEYS[1])" ;;
        EVALSHA_LOCK) echo "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', 30000) then
  if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
end
return 0" ;;
    esac
}

# evalsha NAME PIPELINE PORT PID -> "rps cpu_us_per_request p99_us" of EVALSHA of the script,
# loaded beforehand, on keys drawn from 100,000.
evalsha() {
    local name=$1 p=$2 port=$3 pid=$4 sha before after rps p99
    local n=$((requests * p / 2 > requests ? requests * p / 2 : requests))
    sha=$(redis-cli -p "$port" script load "$(script_body "$name")")
    before=$(cpu_us "$pid")
    read -r rps p99 < <(bench "$port" "$n" "$p" -r 100000 evalsha "$sha" 1 'key:__rand_int__' token)
    after=$(cpu_us "$pid")
    python3 -c "print($rps, ($after-$before)/$n, $p99)"
}

# family_args NAME -> "requests_divisor command..." of a bitmap, HyperLogLog or geo row
family_args() {
    local r=__rand_int__
    case $1 in
        BITCOUNT_1MB) echo 20 bitcount bm1 ;;
        BITOP_AND_1MB) echo 40 bitop and bm3 bm1 bm2 ;;
        PFADD_10) echo 1 pfadd hll4 $r $r $r $r $r $r $r $r $r $r ;;
        PFCOUNT_1) echo 1 pfcount hll1 ;;
        PFCOUNT_3) echo 10 pfcount hll1 hll2 hll3 ;;
        GEOADD) echo 1 geoadd pts2 13.$r 52.$r p:$r ;;
        GEOSEARCH_100K) echo 10 geosearch pts fromlonlat 13.4 52.5 byradius 2 km asc ;;
        XADD) echo 1 xadd xa '*' temp 25 hum 40 robot r7 ;;
        XADD_MAXLEN_1000) echo 1 xadd xm maxlen '~' 1000 '*' temp 25 hum 40 robot r7 ;;
        XRANGE_100) echo 5 xrange xs - + count 100 ;;
    esac
}

# family NAME PIPELINE PORT PID -> "rps cpu_us_per_request p99_us" (data set up beforehand;
# the heavier commands send fewer requests).
family() {
    local p=$2 port=$3 pid=$4 before after rps p99
    # Read, not expanded: XADD's `*` is an argument, not a file pattern.
    local args
    read -r -a args <<<"$(family_args "$1")"
    local n=$(((requests * p / 2 > requests ? requests * p / 2 : requests) / args[0]))
    before=$(cpu_us "$pid")
    read -r rps p99 < <(bench "$port" "$n" "$p" -r 1000000 "${args[@]:1}")
    after=$(cpu_us "$pid")
    python3 -c "print($rps, ($after-$before)/$n, $p99)"
}

# stream_group PIPELINE PORT PID -> "pairs/s cpu_us_per_pair 0": XREADGROUP + XACK through
# four consumer groups of a stream filled beforehand (benches/stream_group.py).
stream_group() {
    local p=$1 port=$2 pid=$3 before after rate p99 n=$((requests / 2))
    python3 benches/stream_group.py setup "$port" "$((n / 4 + 1))"
    before=$(cpu_us "$pid")
    read -r rate p99 < <(taskset -c 1 python3 benches/stream_group.py run "$port" "$n" "$p")
    after=$(cpu_us "$pid")
    python3 -c "print($rate, ($after-$before)/$n, $p99)"
}

# idle PORT PID -> SET at -P 16 while 1,000 other connections sit idle.
idle() {
    local port=$1 pid=$2
    python3 - "$port" <<'PY' &
import socket, sys, time
conns = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(1000)]
time.sleep(600)
PY
    local holder=$!
    sleep 1
    measure SET 16 base "$port" "$pid"
    kill "$holder"
    wait "$holder" 2>/dev/null || true
}

# queue PORT PID -> "items/s cpu_us_per_item 0": 4 producers RPUSH while 4 consumers BLPOP.
queue() {
    local n=$requests before after start end
    redis-cli -p "$1" del jobs >/dev/null
    before=$(cpu_us "$2")
    start=$(date +%s.%N)
    taskset -c 1 redis-benchmark -p "$1" -n "$n" -c 4 -q blpop jobs 0 >/dev/null &
    local consumers=$!
    taskset -c 1 redis-benchmark -p "$1" -n "$n" -c 4 -q rpush jobs item >/dev/null
    wait "$consumers"
    end=$(date +%s.%N)
    after=$(cpu_us "$2")
    python3 -c "print($n/($end-$start), ($after-$before)/$n, 0)"
}

# multi PORT PID -> "transactions/s cpu_us_per_transaction 0" (benches/multi.py).
multi() {
    local port=$1 pid=$2 before after rate p99 n=$requests
    before=$(cpu_us "$pid")
    read -r rate p99 < <(taskset -c 1 python3 benches/multi.py "$port" "$n")
    after=$(cpu_us "$pid")
    python3 -c "print($rate, ($after-$before)/$n, $p99)"
}

# pubsub SUBSCRIBERS PORT PID -> "deliveries/s cpu_us_per_delivery p99_us": one publisher
# pipelines 64-byte messages to SUBSCRIBERS subscriber processes (benches/pubsub.py).
pubsub() {
    local subs=$1 port=$2 pid=$3 before after rate p99 n=$((requests / 2))
    before=$(cpu_us "$pid")
    read -r rate p99 < <(taskset -c 1 python3 benches/pubsub.py "$port" "$subs" "$n")
    after=$(cpu_us "$pid")
    python3 -c "print($rate, ($after-$before)/($n*$subs), $p99)"
}

# bigpush PORT -> seconds for one RPUSH of 1,000,000 elements, reply included
bigpush() {
    python3 - "$1" <<'PY'
import socket, sys, time
n = 1_000_000
parts = [b"*%d\r\n$5\r\nRPUSH\r\n$3\r\nbig\r\n" % (n + 2)]
parts += [b"$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(n)]
request = b"".join(parts)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"DEL big\r\n"); s.recv(64)
start = time.perf_counter()
s.sendall(request)
reply = s.recv(64)
elapsed = time.perf_counter() - start
assert reply == b":%d\r\n" % n, reply
print(f"{elapsed:.3f}")
PY
}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv="benches/results/compare-$stamp.csv"
echo "test,pipeline,redis_rps,oxidis_rps,rps_ratio,redis_cpu_us_per_req,oxidis_cpu_us_per_req,cpu_ratio,redis_p99_us,oxidis_p99_us" >"$csv"
printf '%-10s %3s %12s %12s %7s %10s %10s %7s %9s %9s\n' test P redis_rps oxidis_rps ratio redis_us oxidis_us ratio redis_p99 oxidis_p99
# row TEST PIPELINE MEASURE...: runs "MEASURE... PORT PID" on both servers, A B A B, and
# prints and records the medians.
row() {
    local t=$1 p=$2 a b c
    shift 2
    local r_rps=() r_cpu=() r_p99=() o_rps=() o_cpu=() o_p99=()
    for _ in $(seq "$rounds"); do
        read -r a b c < <("$@" "$redis_port" "$redis_pid"); r_rps+=("$a"); r_cpu+=("$b"); r_p99+=("$c")
        read -r a b c < <("$@" "$oxidis_port" "$oxidis_pid"); o_rps+=("$a"); o_cpu+=("$b"); o_p99+=("$c")
    done
    local rr rc rp orps oc op line
    rr=$(median "${r_rps[@]}"); rc=$(median "${r_cpu[@]}"); rp=$(median "${r_p99[@]}")
    orps=$(median "${o_rps[@]}"); oc=$(median "${o_cpu[@]}"); op=$(median "${o_p99[@]}")
    line=$(python3 -c "print(f'$t,$p,{$rr:.0f},{$orps:.0f},{$orps/$rr:.2f},{$rc:.3f},{$oc:.3f},{$oc/$rc:.2f},{$rp:.0f},{$op:.0f}')")
    echo "$line" >>"$csv"
    IFS=, read -r c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 <<<"$line"
    printf '%-10s %3s %12s %12s %7s %10s %10s %7s %9s %9s\n' "$c1" "$c2" "$c3" "$c4" "$c5" "$c6" "$c7" "$c8" "$c9" "$c10"
}

for v in "${variants[@]}"; do
    for t in "${tests[@]}"; do
        label=$t
        [ "$v" = base ] || label="${t}_$v"
        for p in "${pipelines[@]}"; do
            row "$label" "$p" measure "$t" "$p" "$v"
        done
    done
done
for s in "${scripts[@]}"; do
    for p in "${pipelines[@]}"; do
        row "$s" "$p" evalsha "$s" "$p"
    done
done
if [ ${#families[@]} -gt 0 ]; then
    python3 benches/families_setup.py "$redis_port"
    python3 benches/families_setup.py "$oxidis_port"
fi
for f in "${families[@]}"; do
    for p in "${pipelines[@]}"; do
        row "$f" "$p" family "$f" "$p"
    done
done
if [ -n "$streams" ]; then
    for p in "${pipelines[@]}"; do
        row STREAM_GROUP "$p" stream_group "$p"
    done
fi
row SET_IDLE1000 16 idle
row QUEUE 1 queue
row MULTI_3INCR 100 multi
row PUBSUB_1 100 pubsub 1
row PUBSUB_10 100 pubsub 10
r_big=$(bigpush "$redis_port"); o_big=$(bigpush "$oxidis_port")
echo "one RPUSH of 1,000,000 elements: redis ${r_big} s, oxidis ${o_big} s"
echo "rpush_1m_seconds,,${r_big},${o_big},,,,,," >>"$csv"
echo "empty-server RSS: redis ${redis_rss} kB, oxidis ${oxidis_rss} kB, ratio $(python3 -c "print(f'{$oxidis_rss/$redis_rss:.2f}')")"
echo "rss_kb,,${redis_rss},${oxidis_rss},,,,,," >>"$csv"
echo "written to $csv"
