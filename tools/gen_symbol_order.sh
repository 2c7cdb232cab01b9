#!/usr/bin/env bash
# Writes tools/symbol-order.txt, the functions build.rs has the linker place side by side: those
# a release build of oxidis runs to start, accept clients, serve redis-benchmark's commands and
# idle, as valgrind's callgrind records them. Run it again after a dependency or toolchain
# update or a large change of the code (names the build no longer has are skipped, so a stale
# file only makes the empty server's code take more pages). Needs valgrind, redis-cli and
# redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
cargo build --release --quiet
bin=target/release/oxidis
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
port=$(free_port)
valgrind --tool=callgrind --demangle=no --compress-strings=no --callgrind-out-file="$out/cg" \
    "$bin" --port "$port" --save '' >/dev/null 2>&1 &
valgrind=$!
for _ in $(seq 150); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
redis-benchmark -p "$port" -n 2000 -c 5 -q \
    -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange,mset >/dev/null
sleep 1
callgrind_control -d "$valgrind" >/dev/null 2>&1
kill "$valgrind"
wait "$valgrind" || true
grep '^fn=' "$out/cg.1" | sed 's/^fn=//' | sort -u >"$out/ran"
nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u \
    | comm -12 - "$out/ran" >tools/symbol-order.txt
echo "tools/symbol-order.txt: $(wc -l <tools/symbol-order.txt) functions"
