#!/usr/bin/env bash
# Memory per key, oxidis against redis-server, each shape loaded into a fresh server.
# Shapes: 16-byte keys with 32-byte string values; 100-element lists; 5-field hashes;
# one sorted set of N members; with SHAPES, also `hll` (a 20-element HyperLogLog per key,
# sparse), `geo` (one geo set of N points), `stream` (one stream of N entries of 3 small
# fields) and `pel` (the same stream read through a consumer group, so that all N entries are
# pending; per entry, the stream included). Data is sent with `redis-cli --pipe`.
# Prints used_memory and RSS growth per key (per member for the sorted set) and appends
# them to the CSV given as the second argument, or to benches/results/memory-<time>.csv.
# Usage: benches/memory.sh [N] [csv]    (N defaults to 1,000,000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
csv=${2:-benches/results/memory-$(date -u +%Y%m%dT%H%M%SZ).csv}
cargo build --release --quiet
source benches/lib.sh
rss_bytes() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
used_memory() { redis-cli -p "$1" info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# protocol SHAPE -> RESP commands loading N items of SHAPE, on stdout
protocol() {
    python3 - "$1" "$n" <<'PY'
import sys
shape, n = sys.argv[1], int(sys.argv[2])
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
batch = []
for i in range(n):
    key = b"key:%012d" % i
    if shape == "string":
        batch.append(cmd(b"SET", key, b"v" * 32))
    elif shape == "list":
        batch.append(cmd(b"RPUSH", key, *[b"item-%d" % j for j in range(100)]))
    elif shape == "hash":
        batch.append(cmd(b"HSET", key, b"temperature", b"25", b"humidity", b"0.5",
                         b"pressure", b"1013", b"status", b"ok", b"name", b"sensor-%d" % i))
    elif shape == "zset":
        batch.append(cmd(b"ZADD", b"board", b"%d" % (i * 7 % 1000003), b"member:%d" % i))
    elif shape == "hll":
        batch.append(cmd(b"PFADD", key, *[b"reading-%d-%d" % (i, j) for j in range(20)]))
    elif shape == "geo":
        lon, lat = -180 + (i * 7919 % 360000) / 1000, -85 + (i * 104729 % 170000) / 1000
        batch.append(cmd(b"GEOADD", b"fleet", b"%.3f" % lon, b"%.3f" % lat, b"robot:%d" % i))
    elif shape in ("stream", "pel"):
        batch.append(cmd(b"XADD", b"events", b"*", b"temp", b"%d" % (i % 40), b"hum", b"40",
                         b"robot", b"r%d" % (i % 9)))
    if len(batch) == 10000:
        out.write(b"".join(batch)); batch.clear()
out.write(b"".join(batch))
if shape == "pel":
    out.write(cmd(b"XGROUP", b"CREATE", b"events", b"workers", b"0"))
    for _ in range(0, n, 10000):
        out.write(cmd(b"XREADGROUP", b"GROUP", b"workers", b"alice", b"COUNT", b"10000",
                      b"STREAMS", b"events", b">"))
PY
}

# load SERVER SHAPE -> "used_memory_per_item rss_per_item"
load() {
    local server=$1 shape=$2 port pid before_used before_rss
    port=$(free_port)
    if [ "$server" = redis ]; then
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    else
        target/release/oxidis --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
    fi
    pid=$!
    wait_up "$port"
    before_used=$(used_memory "$port"); before_rss=$(rss_bytes "$pid")
    redis-cli -p "$port" --pipe <"$work/$shape.resp" >/dev/null
    sleep 1
    python3 -c "print(($(used_memory "$port")-$before_used)/$n, ($(rss_bytes "$pid")-$before_rss)/$n)"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

[ -s "$csv" ] || echo "shape,items,redis_used_per_item,oxidis_used_per_item,used_ratio,redis_rss_per_item,oxidis_rss_per_item,rss_ratio" >"$csv"
printf '%-7s %12s %12s %6s %12s %12s %6s\n' shape redis_used oxidis_used ratio redis_rss oxidis_rss ratio
for shape in ${SHAPES:-string list hash zset}; do
    protocol "$shape" >"$work/$shape.resp"
    read -r ru rr < <(load redis "$shape")
    read -r ou or < <(load oxidis "$shape")
    line=$(python3 -c "print(f'$shape,$n,{$ru:.1f},{$ou:.1f},{$ou/$ru:.2f},{$rr:.1f},{$or:.1f},{$or/$rr:.2f}')")
    echo "$line" >>"$csv"
    IFS=, read -r s _ a b c d e f <<<"$line"
    printf '%-7s %12s %12s %6s %12s %12s %6s\n' "$s" "$a" "$b" "$c" "$d" "$e" "$f"
    rm -f "$work/$shape.resp"
done
echo "written to $csv"
