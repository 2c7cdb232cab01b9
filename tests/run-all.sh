#!/usr/bin/env bash
# Runs every test: unit and integration tests (Rust, redis crate), redis-py and redis-cli tests,
# and the units of Redis's own Tcl suite listed in tests/redis-suite/units.txt.
# On a fresh Debian machine it first installs what they need (redis-cli, redis-server 7.0.15 for
# the persistence interop tests, tclsh and its TLS package, openssl for the TLS test certificates,
# the pinned Python packages); the Tcl suite itself is fetched by tests/redis-suite/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v tclsh >/dev/null \
    || ! command -v dpkg-source >/dev/null || ! command -v openssl >/dev/null \
    || ! echo 'if {[catch {package require tls}]} {exit 1}' | tclsh >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q redis-server redis-tools tcl tcl-tls dpkg-dev openssl >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt 2>&1 \
    | grep -v "Running pip as the 'root' user" || true
cargo build --release --locked
cargo test --release --locked
python3 -m pytest -q tests/python
# The atomicity, queue and fan-out tests again with commands running on two threads.
OXIDIS_ARGS="--io-threads 2" python3 -m pytest -q tests/python/test_transactions.py \
    tests/python/test_lists.py tests/python/test_pubsub.py
tests/redis-suite/run.sh
