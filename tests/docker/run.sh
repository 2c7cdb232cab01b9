#!/usr/bin/env bash
# Builds the real Dockerfile with a real Docker engine and checks that the image is used
# exactly like the official redis image. No registry can be reached here, so the base image
# the Dockerfile names (rust:1.95.0-slim-bookworm) is made locally: a debootstrapped bookworm
# with gcc, this machine's Rust toolchain, and the project's crates vendored for offline use.
# Docker runs with --bridge=none --iptables=false and every container with --network host, on a
# port other than 6379; everything created is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
builder_tag="rust:1.95.0-slim-bookworm"
image="oxidis-image-test:latest"
volume="oxidis-image-test-data"
work=$(mktemp -d /var/tmp/oxidis-docker.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >/dev/null
fi

# A private daemon: its own data root, socket and pid file.
dockerd --bridge=none --iptables=false --data-root "$work/data-root" --exec-root "$work/exec" \
    --pidfile "$work/dockerd.pid" -H "unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$work/docker.sock"
cleanup() {
    docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker volume rm -f "$volume" >/dev/null 2>&1 || true
    docker rmi -f "$image" "$builder_tag" >/dev/null 2>&1 || true
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    # The daemon leaves its network namespace mounted.
    grep -F "$work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
docker info >/dev/null

fail() { echo "FAIL: $*" >&2; exit 1; }

# The builder base image.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
debootstrap --variant=minbase --include=gcc,libc6-dev bookworm "$work/rootfs" \
    "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
sysroot=$(rustc --print sysroot)
mkdir -p "$work/rootfs/usr/local/rust" "$work/rootfs/usr/local/cargo"
cp -a "$sysroot/bin" "$sysroot/lib" "$work/rootfs/usr/local/rust/"
cargo vendor --locked --quiet "$work/rootfs/usr/local/cargo/vendor" >/dev/null
cat >"$work/rootfs/usr/local/cargo/config.toml" <<'EOF'
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"
EOF
tar -C "$work/rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' - "$builder_tag" >/dev/null
rm -rf "$work/rootfs"

# The image, from the Dockerfile as it is.
docker build --network host -q -t "$image" . >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "image size: $((size / 1024)) kB"
[ "$size" -le $((20 * 1024 * 1024)) ] || fail "image is larger than 20 MB"
[ "$(docker image inspect -f '{{.Config.User}}' "$image")" = "999:999" ] || fail "image runs as root"

wait_ping() {
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return
        sleep 0.1
    done
    fail "no PONG on port $port"
}

# 1. Defaults, as `docker run -d redis`: data in the /data volume, saved on docker stop.
docker volume create "$volume" >/dev/null
cid=$(docker run -d --network host -v "$volume:/data" "$image" --port "$port")
wait_ping
[ "$(redis-cli -p "$port" config get protected-mode | tail -1)" = no ] || fail "protected mode on"
# redis-py from the tests' virtual environment (made by tests/run-all.sh, or here).
py=target/venv/bin/python
[ -x "$py" ] || { python3 -m venv target/venv && "$py" -m pip install -q -r tests/python/requirements.txt; }
"$py" - "$port" <<'PY'
import json, sys, time
import redis
r = redis.Redis(port=int(sys.argv[1]), decode_responses=True)
state = {"robot": 7, "pose": [1.5, -2.0, 0.25], "status": "moving"}
assert r.set("robot:7", json.dumps(state)) is True
assert json.loads(r.get("robot:7")) == state
p = r.pubsub()
p.subscribe("telemetry")
assert p.get_message(timeout=1)["type"] == "subscribe"
assert r.publish("telemetry", "t=25.5") == 1
assert p.get_message(timeout=1)["data"] == "t=25.5"
assert r.rpush("jobs", *[f"job-{i}" for i in range(100)]) == 100
assert r.lpop("jobs") == "job-0"
assert r.lpop("jobs", 2) == ["job-1", "job-2"]
PY
echo "container memory: $(docker stats --no-stream --format '{{.MemUsage}}' "$cid")"
started=$(date +%s.%N)
docker stop "$cid" >/dev/null
stopped=$(python3 -c "print(round($(date +%s.%N) - $started, 2))")
echo "docker stop took ${stopped} s"
python3 -c "import sys; sys.exit(0 if $stopped < 10 else 1)" || fail "docker stop took ${stopped} s"
[ "$(docker inspect -f '{{.State.ExitCode}}' "$cid")" = 0 ] || fail "non-zero exit on SIGTERM"

# 2. `redis-server` as the command, on the same volume: the data is back.
cid=$(docker run -d --network host -v "$volume:/data" "$image" redis-server --port "$port")
wait_ping
[ "$(redis-cli -p "$port" llen jobs)" = 97 ] || fail "data did not survive the restart"
[ "$(redis-cli -p "$port" get robot:7 | python3 -c 'import json,sys; print(json.load(sys.stdin)["robot"])')" = 7 ] \
    || fail "JSON value lost"
docker stop "$cid" >/dev/null

# 3. `--appendonly yes`, then a config file saying the same: the AOF lands in the volume.
cid=$(docker run -d --network host -v "$volume:/data" "$image" --port "$port" --appendonly yes)
wait_ping
redis-cli -p "$port" set aof-key 1 >/dev/null
[ "$(redis-cli -p "$port" info persistence | tr -d '\r' | awk -F: '/^aof_enabled/ {print $2}')" = 1 ] \
    || fail "AOF not enabled"
docker kill -s KILL "$cid" >/dev/null
printf 'port %s\nappendonly yes\n' "$port" >"$work/redis.conf"
chmod 644 "$work/redis.conf"
cid=$(docker run -d --network host -v "$volume:/data" \
    -v "$work/redis.conf:/usr/local/etc/redis/redis.conf:ro" \
    "$image" oxidis /usr/local/etc/redis/redis.conf)
wait_ping
[ "$(redis-cli -p "$port" get aof-key)" = 1 ] || fail "AOF data lost after SIGKILL"
docker stop "$cid" >/dev/null

# 4. Bad input: an unknown argument stops the container with the error in its log.
cid=$(docker run -d --network host "$image" --port "$port" --no-such-option yes)
docker wait "$cid" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
[ "$code" != 0 ] || fail "bad argument exited 0"
# Read the log whole first: `grep -q` closing the pipe early fails the pipeline (pipefail).
log=$(docker logs "$cid" 2>&1)
grep -q "FATAL CONFIG FILE ERROR" <<<"$log" || fail "no error in the log: $log"
echo "docker image test: ok"
