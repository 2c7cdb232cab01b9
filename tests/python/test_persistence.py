"""RDB persistence with real processes: files move between oxidis and redis-server 7.0.15 in
both directions with the same contents, redis-check-rdb accepts ours, DUMP payloads cross
over, and snapshots survive SIGTERM, save points and a SIGKILL in the middle of BGSAVE."""
import datetime
import os
import shutil
import signal
import subprocess
import time

import pytest
import redis

from conftest import BINARY, free_port

REDIS_SERVER = shutil.which("redis-server") or "redis-server"


class Server:
    """oxidis or redis-server started in `workdir` on a free port."""

    def __init__(self, binary, workdir, *args, port=None):
        self.port = port or free_port()
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port)
        deadline = time.time() + 20
        while True:
            try:
                self.client.ping()
                return
            except redis.exceptions.BusyLoadingError:
                time.sleep(0.05)
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{binary} did not start (exit {self.proc.poll()})")
                time.sleep(0.05)

    def db(self, n):
        return redis.Redis(port=self.port, db=n)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def oxidis(workdir, *args, port=None):
    return Server(BINARY, workdir, *args, port=port)


def redis_server(workdir, *args):
    return Server(REDIS_SERVER, workdir, *args)


def fill(server):
    """Every type in every encoding and size class, with and without TTLs, in three databases."""
    for n in (0, 3, 15):
        r = server.db(n)
        p = r.pipeline(transaction=False)
        p.set("str:int", 12345)
        p.set("str:neg", -9876543210123)
        p.set("str:emb", "short string")
        p.set("str:raw", "x" * 100)
        p.set("str:compressible", "abc" * 1000)
        p.set("str:binary", bytes(range(256)))
        p.set("str:json", '{"temperature": 25.5, "humidity": 0.5, "tags": ["a", "b"]}')
        p.set("str:ttl", "expiring", ex=5000)
        p.set("str:pttl", "expiring", px=9_000_000)
        p.rpush("list:small", "a", "b", 1, 2, -3, 70000, "c" * 60)
        p.rpush("list:big", *[f"item-{i}" for i in range(5000)])
        p.rpush("list:plain", "p" * 10000, "q" * 20000)
        p.expire("list:small", 3000)
        p.hset("hash:small", mapping={"temperature": 25, "humidity": "0.5", "name": "sensor-17"})
        p.hset("hash:big", mapping={f"field-{i}": f"value-{i}" for i in range(1000)})
        p.hset("hash:longvalue", mapping={"f": "v" * 100})
        p.sadd("set:ints", *range(-50, 50))
        p.sadd("set:bigints", *range(1000))
        p.sadd("set:strings", *[f"member-{i}" for i in range(50)])
        p.zadd("zset:small", {"a": 1, "b": 2.5, "c": -3, "inf": float("inf"), "ninf": float("-inf")})
        p.zadd("zset:big", {f"m-{i}": i / 7 for i in range(2000)})
        p.zadd("zset:longmember", {"m" * 100: 1})
        p.expire("zset:big", 7000)
        fill_streams(p)
        p.execute()
        r.set(f"only-in-{n}", n)


def fill_streams(p):
    """Streams over several nodes with deleted entries and field names that change, consumer
    groups with pending entries and idle consumers, an emptied stream, a trimmed one."""
    p.xadd("stream:readings", {"temp": 21.5, "hum": 40, "robot": "r1"}, id="1-1")
    for i in range(250):
        p.xadd("stream:readings", {"temp": i, "hum": 40, "robot": f"r{i % 7}"}, id=f"{i + 2}-0")
    p.xadd("stream:readings", {"other": "x" * 100}, id="1000-5")
    p.xdel("stream:readings", "5-0", "6-0", "1000-5")
    p.xgroup_create("stream:readings", "workers", id="0")
    p.xgroup_create("stream:readings", "audit", id="$")
    p.xreadgroup("workers", "alice", {"stream:readings": ">"}, count=10)
    p.xreadgroup("workers", "bob", {"stream:readings": ">"}, count=5)
    p.xack("stream:readings", "workers", "1-1", "2-0")
    p.xgroup_createconsumer("stream:readings", "workers", "idle")
    p.xadd("stream:emptied", {"a": 1}, id="5-5")
    p.xdel("stream:emptied", "5-5")
    for i in range(120):
        p.xadd("stream:trimmed", {"n": i}, maxlen=50, approximate=False)


def stream_state(r, key):
    """XINFO STREAM FULL of `key`, all of it, but for the radix tree's inner node count (Oxidis
    keeps a stream's nodes in a B-tree, which has no such nodes)."""
    info = r.execute_command("XINFO STREAM", key, "FULL", "COUNT", 0, full=True)
    info.pop("radix-tree-nodes")
    return info


def replayed(value):
    """A stream's state without what a log of commands rebuilds differently, in Redis as in
    Oxidis: the number of nodes (commands fill nodes of their own) and the consumers' seen
    times (set when the commands run)."""
    if not isinstance(value, dict) or "groups" not in value:
        return value
    value = dict(value, groups=[dict(g, consumers=[{k: v for k, v in c.items() if k != b"seen-time"}
                                                   for c in g["consumers"]])
                                for g in value["groups"]])
    value.pop("radix-tree-keys")
    return value


def populate(r, count):
    """key:N holding value:N, as DEBUG POPULATE makes them."""
    r.mset({f"key:{i}": f"value:{i}" for i in range(count)})


class Snapshot(dict):
    """(db, key) -> (type, encoding, value, pttl), and the monotonic times the reading took."""


def snapshot(server):
    """Everything observable about every key of every database."""
    out = Snapshot()
    out.started = time.monotonic()
    for n in range(16):
        r = server.db(n)
        for key in r.keys("*"):
            kind = r.type(key).decode()
            if kind == "string":
                value = r.get(key)
            elif kind == "list":
                value = r.lrange(key, 0, -1)
            elif kind == "hash":
                value = r.hgetall(key)
            elif kind == "set":
                value = sorted(r.smembers(key))
            elif kind == "stream":
                value = stream_state(r, key)
            else:
                value = r.zrange(key, 0, -1, withscores=True)
            out[(n, key)] = (kind, r.object("encoding", key), value, r.pttl(key))
    out.ended = time.monotonic()
    return out


def assert_holds(server, expected, from_log=False):
    """Checks that `server` holds exactly `expected` (see `snapshot`), then stops it."""
    try:
        assert_same(expected, snapshot(server), from_log)
    finally:
        server.stop()


def assert_same(expected, actual, from_log=False):
    """Same keys and values; each expiry at the same moment, so a TTL has shrunk by at most the
    time between the two snapshots (a restart between them takes a second or more on a loaded
    machine), give or take 1 ms of rounding. `from_log`: `actual` was rebuilt by replaying
    commands (see `replayed`)."""
    assert expected.keys() == actual.keys()
    elapsed_ms = (actual.ended - expected.started) * 1000
    for key, (kind, encoding, value, pttl) in expected.items():
        a_kind, a_encoding, a_value, a_pttl = actual[key]
        if from_log:
            value, a_value = replayed(value), replayed(a_value)
        assert (a_kind, a_encoding, a_value) == (kind, encoding, value), key
        if pttl < 0:
            assert a_pttl == pttl, key
        else:
            assert pttl - elapsed_ms - 1 <= a_pttl <= pttl + 1, key


def test_oxidis_dump_loads_in_redis_with_identical_contents(tmp_path):
    ox = oxidis(tmp_path)
    fill(ox)
    expected = snapshot(ox)
    assert len(expected) == 3 * 25
    assert ox.client.save() is True
    ox.stop()
    check = subprocess.run(["redis-check-rdb", str(tmp_path / "dump.rdb")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert "RDB looks OK" in check.stdout
    assert_holds(redis_server(tmp_path, "--save", ""), expected)


def test_redis_dump_loads_in_oxidis_with_identical_contents(tmp_path):
    rs = redis_server(tmp_path, "--save", "")
    fill(rs)
    expected = snapshot(rs)
    assert rs.client.save() is True
    rs.stop()
    ox = oxidis(tmp_path, "--save", "")
    try:
        assert_same(expected, snapshot(ox))
        assert ox.client.info("persistence")["rdb_last_load_keys_loaded"] == len(expected)
    finally:
        ox.stop()


def test_dump_payloads_cross_over_both_ways(tmp_path):
    (tmp_path / "ox").mkdir()
    ox = oxidis(tmp_path / "ox", "--save", "")
    rs = redis_server(tmp_path, "--save", "")
    try:
        fill(rs)
        for key in rs.client.keys("*"):
            payload = rs.client.dump(key)
            assert ox.client.restore(key, 0, payload) == b"OK"
        expected = {k: v for k, v in snapshot(rs).items() if k[0] == 0}
        actual = snapshot(ox)
        for key in expected:
            kind, encoding, value, _ = expected[key]
            assert actual[key][:3] == (kind, encoding, value), key
        # And back: each value dumped by oxidis restores in redis-server unchanged.
        for key in ox.client.keys("*"):
            payload = ox.client.dump(key)
            assert rs.client.restore(key, 0, payload, replace=True) == b"OK"
        assert {k: v[:3] for k, v in snapshot(rs).items() if k[0] == 0} == {
            k: v[:3] for k, v in expected.items()}
    finally:
        ox.stop()
        rs.stop()


def test_restore_errors_match_redis(tmp_path):
    ox = oxidis(tmp_path, "--save", "")
    try:
        r = ox.client
        r.set("k", "v")
        payload = r.dump("k")
        with pytest.raises(redis.exceptions.ResponseError, match="^BUSYKEY Target key name already exists.$"):
            r.restore("k", 0, payload)
        with pytest.raises(redis.exceptions.ResponseError, match="^DUMP payload version or checksum are wrong$"):
            r.restore("other", 0, payload[:-1] + bytes([payload[-1] ^ 1]))
        with pytest.raises(redis.exceptions.ResponseError, match="^Invalid TTL value, must be >= 0$"):
            r.restore("other", -1, payload)
        assert r.restore("k", 0, b"\x00\x03abc\x0a\x00" + b"\x00" * 8, replace=True) == b"OK"
        assert r.get("k") == b"abc"
        assert r.restore("gone", 1, payload, absttl=True) == b"OK"
        assert r.exists("gone") == 0
        assert r.dump("missing") is None
        # The server is still fine after a payload that claims a huge length.
        with pytest.raises(redis.exceptions.ResponseError, match="^Bad data format$"):
            r.restore("bad", 0, b"\x00\x81\xff\xff\xff\xff\xff\xff\xff\xf7\x0a\x00" + b"\x00" * 8)
        assert r.ping() is True
    finally:
        ox.stop()


def test_sigterm_saves_and_restart_restores(tmp_path):
    ox = oxidis(tmp_path)
    fill(ox)
    expected = snapshot(ox)
    assert ox.stop(signal.SIGTERM) == 0
    assert_holds(oxidis(tmp_path), expected)


def test_shutdown_nosave_keeps_the_previous_dump(tmp_path):
    ox = oxidis(tmp_path)
    ox.client.set("saved", 1)
    ox.client.save()
    ox.client.set("unsaved", 1)
    ox.client.shutdown(nosave=True)  # redis-py treats the closed connection as success
    assert ox.proc.wait(timeout=10) == 0
    ox = oxidis(tmp_path)
    try:
        assert ox.client.keys("*") == [b"saved"]
    finally:
        ox.stop()


def test_save_point_triggers_a_background_save(tmp_path):
    ox = oxidis(tmp_path, "--save", "1 3")
    try:
        assert ox.client.info("persistence")["rdb_saves"] == 0
        for i in range(3):
            ox.client.set(f"k{i}", i)
        deadline = time.time() + 10
        while ox.client.info("persistence")["rdb_saves"] == 0:
            assert time.time() < deadline, "no background save after the save point"
            time.sleep(0.1)
        info = ox.client.info("persistence")
        assert info["rdb_changes_since_last_save"] == 0
        assert info["rdb_last_bgsave_status"] == "ok"
        assert (tmp_path / "dump.rdb").exists()
    finally:
        ox.stop(signal.SIGKILL)
    ox = oxidis(tmp_path, "--save", "")
    try:
        assert sorted(ox.client.keys("*")) == [b"k0", b"k1", b"k2"]
    finally:
        ox.stop()


def test_save_point_waits_strictly_more_than_its_seconds(tmp_path):
    """`save 2 1` saves once more than 2 whole seconds have passed since the last save (the
    start), as redis-server does: 3 seconds later on its whole-second clock, not 2."""
    servers = []
    for start, name in ((oxidis, "ox"), (redis_server, "rs")):
        (tmp_path / name).mkdir()
        servers.append(start(tmp_path / name, "--save", "2 1"))
    try:
        started = {}
        for server in servers:
            started[server] = server.client.info("persistence")["rdb_last_save_time"]
            server.client.set("k", "v")
        deadline = time.time() + 10
        for server in servers:
            # The time of the last save changes when the background save ends.
            while (saved := server.client.info("persistence")["rdb_last_save_time"]) == started[server]:
                assert time.time() < deadline, "no save after the save point"
                time.sleep(0.05)
            # 3 seconds on, or 4 when the save ends just past the second that started it.
            assert saved - started[server] in (3, 4), (server.proc.args[0], started[server], saved)
    finally:
        for server in servers:
            server.stop()


def test_failed_background_save_is_retried_after_more_than_5_seconds(tmp_path):
    """After a failed background save, a save point tries again once more than 5 whole seconds
    have passed, as redis-server does (its attempts come 6 seconds apart)."""
    data = tmp_path / "data"
    data.mkdir()
    log = tmp_path / "oxidis.log"
    ox = oxidis(data, "--save", "1 1", "--logfile", str(log))
    try:
        ox.client.set("k", "v")
        shutil.rmtree(data)  # the dump can no longer be written
        deadline = time.time() + 20
        while True:
            starts = [datetime.datetime.fromisoformat(line.split()[0])
                      for line in log.read_text().splitlines() if "Background saving started" in line]
            if len(starts) >= 2:
                break
            assert time.time() < deadline, log.read_text()
            time.sleep(0.1)
        assert ox.client.info("persistence")["rdb_last_bgsave_status"] == "err"
        assert 5.8 <= (starts[1] - starts[0]).total_seconds() <= 7, starts
    finally:
        # SIGTERM would try a last save, fail and (as in Redis) keep the server running.
        ox.stop(signal.SIGKILL)


def test_bgsave_serves_clients_and_is_one_point_in_time(tmp_path):
    ox = oxidis(tmp_path, "--save", "")
    r = ox.client
    try:
        populate(r, 2000)
        # 200 us per key: the child needs about 0.4 s, while the parent goes on serving.
        r.config_set("rdb-key-save-delay", 200)
        cli = subprocess.run(["redis-cli", "-p", str(ox.port), "BGSAVE"], capture_output=True, text=True)
        assert cli.stdout == "Background saving started\n"
        assert r.info("persistence")["rdb_bgsave_in_progress"] == 1
        with pytest.raises(redis.exceptions.ResponseError, match="^Background save already in progress$"):
            r.execute_command("BGSAVE")
        started = time.time()
        for i in range(2000):
            r.set(f"key:{i}", "changed")
        r.set("written-during-save", 1)
        assert time.time() - started < 5
        while r.info("persistence")["rdb_bgsave_in_progress"] == 1:
            time.sleep(0.05)
        assert r.info("persistence")["rdb_last_bgsave_status"] == "ok"
    finally:
        ox.stop(signal.SIGKILL)
    ox = oxidis(tmp_path, "--save", "")
    try:
        r = ox.client
        assert r.dbsize() == 2000
        assert r.get("key:0") == b"value:0" and r.get("key:1999") == b"value:1999"
        assert r.exists("written-during-save") == 0
    finally:
        ox.stop()


def test_sigkill_during_bgsave_leaves_the_previous_dump_loadable(tmp_path):
    ox = oxidis(tmp_path, "--save", "")
    r = ox.client
    r.set("generation", 1)
    r.save()
    populate(r, 5000)
    r.set("generation", 2)
    r.config_set("rdb-key-save-delay", 1000)
    r.bgsave()
    time.sleep(0.5)
    children = subprocess.run(["pgrep", "-P", str(ox.proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "no BGSAVE child"
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    ox.stop(signal.SIGKILL)
    assert list(tmp_path.glob("temp-*.rdb")), "the child had not started writing"
    ox = oxidis(tmp_path, "--save", "")
    try:
        assert ox.client.get("generation") == b"1"
        assert ox.client.dbsize() == 1
    finally:
        ox.stop()


def test_corrupt_dump_stops_the_server_with_redis_message(tmp_path):
    ox = oxidis(tmp_path, "--save", "")
    ox.client.set("k", "v")
    ox.client.save()
    ox.stop()
    data = bytearray((tmp_path / "dump.rdb").read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / "dump.rdb").write_bytes(data)
    log = tmp_path / "log.txt"
    proc = subprocess.run([BINARY, "--port", str(free_port()), "--dir", str(tmp_path), "--logfile", str(log)],
                          timeout=20)
    assert proc.returncode != 0
    assert "CRC error" in log.read_text()


def test_clients_get_loading_errors_while_the_dump_loads(tmp_path):
    """The server accepts clients while its dump loads: commands that need the data get
    -LOADING, INFO shows the progress, settings that loading depends on cannot change; then
    everything is there."""
    ox = oxidis(tmp_path, "--save", "", "--rdbcompression", "no", "--enable-debug-command", "yes")
    ox.client.execute_command("DEBUG", "POPULATE", 20000, "key", 1000)
    ox.client.save()
    ox.stop()
    port = free_port()
    proc = subprocess.Popen([BINARY, "--port", str(port), "--dir", str(tmp_path), "--save", "",
                             "--key-load-delay", "200"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # redis-py retries a -LOADING reply (its BusyLoadingError is a ConnectionError): not here.
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    r = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))
    try:
        deadline = time.time() + 10
        while True:
            try:
                info = r.info("persistence")
                break
            except redis.ConnectionError:
                assert time.time() < deadline
                time.sleep(0.01)
        assert (info["loading"], info["async_loading"]) == (1, 0)
        assert info["loading_total_bytes"] == (tmp_path / "dump.rdb").stat().st_size
        assert 0 <= info["loading_loaded_perc"] < 100
        with pytest.raises(redis.exceptions.BusyLoadingError, match="^Redis is loading the dataset in memory$"):
            r.get("key:1")
        with pytest.raises(redis.exceptions.BusyLoadingError):
            r.config_set("appendonly", "yes")
        assert r.config_set("loglevel", "debug") is True
        deadline = time.time() + 30
        while r.info("persistence")["loading"] == 1:
            assert time.time() < deadline
            time.sleep(0.05)
        assert "loading_total_bytes" not in r.info("persistence")
        assert r.dbsize() == 20000
        assert r.get("key:1") == b"value:1" + b"\0" * (1000 - len("value:1"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
