"""The append-only file with real processes: redis-check-aof accepts what oxidis writes,
redis-server 7.0.15 loads it with the same data and the other way round, a cut tail loads as
Redis would, and no acknowledged write is lost when the server is killed with SIGKILL."""
import os
import random
import signal
import subprocess
import threading
import time

import pytest
import redis
import redis.backoff
import redis.retry

from conftest import BINARY
from test_persistence import assert_holds, fill, oxidis, redis_server, snapshot


def check_aof(workdir):
    manifest = workdir / "appendonlydir" / "appendonly.aof.manifest"
    check = subprocess.run(["redis-check-aof", str(manifest)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "All AOF files and manifest are valid" in check.stdout


def commands_that_need_rewriting(server):
    """Writes whose log entry must differ from the command to replay the same way later."""
    r = server.client
    r.set("relative", "v", ex=1000)
    r.execute_command("SETEX", "setex", 2000, "v")
    r.set("keepttl", "v", px=3_000_000)
    r.set("keepttl", "w", keepttl=True)
    r.expire("str:emb", 4000)
    r.incrbyfloat("float", 0.1)
    r.incrbyfloat("float", 0.2)
    r.hincrbyfloat("hfloat", "f", 1.5)
    r.sadd("popme", *range(20))
    r.spop("popme")
    r.spop("popme", 5)
    r.rpush("queue", "a", "b")
    assert r.blpop(["empty", "queue"], 1) == (b"queue", b"a")
    r.zadd("zq", {"x": 1, "y": 2})
    assert r.bzpopmin(["zq"], 1) == (b"zq", b"x", 1.0)
    r.rpush("src", 1, 2, 3)
    r.blmove("src", "dst", 1, "LEFT", "RIGHT")
    r.restore("restored", 5000, r.dump("str:emb"))
    with r.pipeline(transaction=True) as p:
        p.incr("counter")
        p.incr("counter")
        p.execute()
    # Streams: generated IDs, approximate trimming, reads through a group (logged as XCLAIM
    # and XGROUP SETID), claims.
    for i in range(300):
        r.xadd("events", {"n": i}, maxlen=120, approximate=True)
    r.xadd("events", {"n": "ms"}, id="99999999999999-*")
    r.xtrim("events", maxlen=100, approximate=True)
    r.xgroup_create("events", "g", id="0")
    r.xreadgroup("g", "c1", {"events": ">"}, count=20)
    r.xreadgroup("g", "c2", {"events": ">"}, count=5, noack=True)
    r.xclaim("events", "g", "c3", 0, [r.xpending_range("events", "g", "-", "+", 1)[0]["message_id"]])
    r.xautoclaim("events", "g", "c4", 0, count=3)
    r.xgroup_setid("events", "g", "0")
    r.xgroup_delconsumer("events", "g", "c2")
    r.set("gone", "v", px=1)
    time.sleep(0.01)
    assert r.get("gone") is None


def test_oxidis_aof_loads_in_redis_with_identical_contents(tmp_path):
    ox = oxidis(tmp_path, "--appendonly", "yes", "--save", "")
    fill(ox)
    commands_that_need_rewriting(ox)
    expected = snapshot(ox)
    ox.stop()
    check_aof(tmp_path)
    assert_holds(redis_server(tmp_path, "--appendonly", "yes", "--save", ""), expected,
                 from_log=True)


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_rewritten_aof_loads_in_both_servers(tmp_path, preamble):
    ox = oxidis(tmp_path, "--appendonly", "yes", "--save", "", "--aof-use-rdb-preamble", preamble)
    fill(ox)
    assert ox.client.bgrewriteaof() is True
    while ox.client.info("persistence")["aof_rewrite_in_progress"]:
        time.sleep(0.05)
    assert ox.client.info("persistence")["aof_rewrites"] == 1
    commands_that_need_rewriting(ox)
    expected = snapshot(ox)
    extension = "rdb" if preamble == "yes" else "aof"
    assert (tmp_path / "appendonlydir" / "appendonly.aof.manifest").read_text() == (
        f"file appendonly.aof.2.base.{extension} seq 2 type b\n"
        "file appendonly.aof.2.incr.aof seq 2 type i\n")
    assert sorted(os.listdir(tmp_path / "appendonlydir")) == [
        f"appendonly.aof.2.base.{extension}", "appendonly.aof.2.incr.aof", "appendonly.aof.manifest"]
    ox.stop()
    check_aof(tmp_path)
    assert_holds(oxidis(tmp_path, "--appendonly", "yes", "--save", ""), expected,
                 from_log=True)
    assert_holds(redis_server(tmp_path, "--appendonly", "yes", "--save", ""), expected,
                 from_log=True)


def test_redis_aof_loads_in_oxidis(tmp_path):
    rs = redis_server(tmp_path, "--appendonly", "yes", "--save", "")
    fill(rs)
    commands_that_need_rewriting(rs)
    expected = snapshot(rs)
    rs.stop()
    assert_holds(oxidis(tmp_path, "--appendonly", "yes", "--save", ""), expected,
                 from_log=True)


def test_config_set_appendonly_at_run_time(tmp_path):
    ox = oxidis(tmp_path, "--save", "")
    r = ox.client
    r.set("before", 1)
    assert r.config_set("appendonly", "yes") is True
    while r.info("persistence")["aof_rewrite_in_progress"]:
        time.sleep(0.05)
    r.set("after", 2)
    assert r.info("persistence")["aof_enabled"] == 1
    ox.stop(signal.SIGKILL)
    ox = oxidis(tmp_path, "--appendonly", "yes", "--save", "")
    try:
        assert sorted(ox.client.keys("*")) == [b"after", b"before"]
        assert ox.client.config_set("appendonly", "no") is True
        ox.client.set("unlogged", 1)
    finally:
        ox.stop(signal.SIGKILL)
    ox = oxidis(tmp_path, "--appendonly", "yes", "--save", "")
    try:
        assert sorted(ox.client.keys("*")) == [b"after", b"before"]
    finally:
        ox.stop()


def test_automatic_rewrite_when_the_log_doubles(tmp_path):
    ox = oxidis(tmp_path, "--appendonly", "yes", "--save", "",
                "--auto-aof-rewrite-percentage", "100", "--auto-aof-rewrite-min-size", "64kb")
    r = ox.client
    try:
        for i in range(200):
            r.set("k", "x" * 1000)
        deadline = time.time() + 10
        while r.info("persistence")["aof_rewrites"] == 0:
            assert time.time() < deadline, "no automatic rewrite"
            time.sleep(0.1)
        assert r.get("k") == b"x" * 1000
    finally:
        ox.stop()


def test_truncated_tail_loads_only_when_allowed(tmp_path):
    ox = oxidis(tmp_path, "--appendonly", "yes", "--save", "")
    ox.client.set("complete", 1)
    ox.stop()
    incr = tmp_path / "appendonlydir" / "appendonly.aof.1.incr.aof"
    whole = incr.stat().st_size
    with open(incr, "ab") as f:
        f.write(b"*3\r\n$3\r\nSET\r\n$3\r\nhal")
    log = tmp_path / "refused.log"
    proc = subprocess.run([BINARY, "--port", "0", "--dir", str(tmp_path), "--appendonly", "yes",
                           "--aof-load-truncated", "no", "--logfile", str(log)], timeout=20)
    assert proc.returncode != 0
    assert "Unexpected end of file reading the append only file" in log.read_text()
    ox = oxidis(tmp_path, "--appendonly", "yes", "--save", "")
    try:
        assert ox.client.keys("*") == [b"complete"]
        assert incr.stat().st_size == whole
        ox.client.set("next", 2)
    finally:
        ox.stop()
    check_aof(tmp_path)


class Writer(threading.Thread):
    """Sends numbered SET and RPUSH commands from `first` on and records each acknowledged
    number with the time it was acknowledged."""

    def __init__(self, port, first):
        super().__init__(daemon=True)
        # No retries: the first failure is the kill.
        no_retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
        self.client = redis.Redis(port=port, socket_timeout=5, retry=no_retry)
        self.next = first
        self.acked = []

    def run(self):
        while True:
            n = self.next
            self.next += 1
            try:
                self.client.set(f"w:{n}", n)
                self.client.rpush("log", n)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                return
            self.acked.append((n, time.monotonic()))


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_no_acknowledged_write_is_lost_to_sigkill(tmp_path, fsync):
    rng = random.Random(7)
    first, acked_total, last_round = 0, 0, []
    for kills in range(21):
        ox = oxidis(tmp_path, "--appendonly", "yes", "--appendfsync", fsync, "--save", "")
        r = ox.client
        present = {int(x) for x in r.lrange("log", 0, -1)}
        missing = [(n, t) for n, t in last_round if n not in present or r.get(f"w:{n}") != b"%d" % n]
        if fsync == "always":
            assert not missing, f"after kill {kills}: lost {len(missing)} acknowledged writes"
        else:
            # everysec may lose what was written in the last second or so before the kill.
            assert all(last_round[-1][1] - t < 2.0 for _, t in missing), missing[:5]
        if kills == 20:
            ox.stop()
            break
        writer = Writer(ox.port, first)
        writer.start()
        time.sleep(rng.uniform(0.05, 0.4))
        ox.proc.send_signal(signal.SIGKILL)
        ox.proc.wait(timeout=10)
        writer.join(timeout=10)
        first, last_round = writer.next, writer.acked
        acked_total += len(last_round)
    assert acked_total > 20 * 10, "the writer made too little progress to prove anything"
    check_aof(tmp_path)
