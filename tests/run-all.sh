#!/usr/bin/env bash
# Runs every test: unit and integration tests (Rust, redis crate), redis-py and redis-cli tests,
# and the units of Redis's own Tcl suite listed in tests/redis-suite/units.txt.
# On a fresh Debian machine it first installs what they need (redis-cli, redis-server 7.0.15 for
# the persistence interop tests, tclsh and its TLS package, openssl for the TLS test certificates,
# the pinned Python packages, in a virtual environment); the Tcl suite itself is fetched by
# tests/redis-suite/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v tclsh >/dev/null \
    || ! command -v dpkg-source >/dev/null || ! command -v openssl >/dev/null \
    || ! echo 'if {[catch {package require tls}]} {exit 1}' | tclsh >/dev/null 2>&1 \
    || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q redis-server redis-tools tcl tcl-tls dpkg-dev openssl python3-venv >/dev/null
fi
# The Python tests run in a virtual environment of their own (Debian's Python refuses
# `pip install` outside one, PEP 668).
venv=target/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
cargo build --release --locked
cargo test --release --locked
"$venv/bin/python" -m pytest -q tests/python
# The atomicity, queue and fan-out tests again with commands running on two threads.
OXIDIS_ARGS="--io-threads 2" "$venv/bin/python" -m pytest -q tests/python/test_transactions.py \
    tests/python/test_lists.py tests/python/test_pubsub.py tests/python/test_scripting.py
tests/redis-suite/run.sh
