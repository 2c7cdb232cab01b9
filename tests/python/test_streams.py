"""Streams through redis-py: an IoT pipeline of producer and worker processes with a consumer
group (a worker killed with SIGKILL mid-batch, its entries claimed by the others), run plain,
with io-threads and across a SIGKILL of the server under appendfsync always; the commands
answered as redis-server 7.0.15 answers them, errors and bad input included."""
import multiprocessing
import os
import signal
import subprocess
import time

import pytest
import redis

from conftest import BINARY, free_port
from side_by_side import Pair, outcome
from test_persistence import oxidis

STREAM = "sensor:lidar"
GROUP = "workers"
PRODUCERS = 8
PER_PRODUCER = 2500
WORKERS = 4
MAXLEN = 10_000


def connect(port):
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)


class Retrying:
    """A client that runs each call until it gets an answer: the server may be restarting."""

    def __init__(self, port, seconds):
        self.port = port
        self.deadline = time.time() + seconds
        self.client = connect(port)

    def __call__(self, action):
        while True:
            try:
                return action(self.client)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                if time.time() > self.deadline:
                    raise
                time.sleep(0.05)
                self.client = connect(self.port)


def produce(port, n, out):
    """XADDs readings with MAXLEN ~ and records the IDs it was answered. Holds back while the
    group is more than half a stream behind, as a real gateway must so that trimming never
    drops a reading nobody read."""
    call = Retrying(port, 120)
    ids = []
    for i in range(PER_PRODUCER):
        if i % 100 == 0:
            while True:
                groups = call(lambda r: r.xinfo_groups(STREAM))
                lag = groups[0]["lag"] if groups else 0
                if lag is not None and lag < MAXLEN // 2:
                    break
                time.sleep(0.01)
        reading = {"range": f"{2.31 + i / 1000:.3f}", "producer": n, "seq": i}
        ids.append(call(
                            lambda r: r.xadd(STREAM, reading, maxlen=MAXLEN, approximate=True)))
    out.put(("produced", n, ids))


def work(port, name, out, die_mid_batch):
    """Reads batches through the group, acknowledges them, and claims entries idle for a
    second (a dead worker's). Reports what it processed and which XACKs removed an entry."""
    call = Retrying(port, 180)
    processed, acked = [], []
    while True:
        if call(lambda r: r.get("stop")):
            break
        batch = call(lambda r: r.xreadgroup(
            GROUP, name, {STREAM: ">"}, count=50, block=200))
        entries = [e for _, stream_entries in batch for e in stream_entries]
        claimed = call(lambda r: r.xautoclaim(
            STREAM, GROUP, name, min_idle_time=1000, count=50))
        entries += claimed[1]
        if die_mid_batch and entries:
            # Mid-batch: read, not acknowledged. The test kills this process now.
            out.put(("holding", name, [e[0] for e in entries]))
            time.sleep(600)
        for entry_id, _fields in entries:
            processed.append(entry_id)
            if call(lambda r: r.xack(STREAM, GROUP, entry_id)) == 1:
                acked.append(entry_id)
    out.put(("worked", name, processed, acked))


def run_pipeline(port, restart=None):
    r = connect(port)
    r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    workers = [ctx.Process(target=work, args=(port, f"w{i}", out, i == 0), daemon=True)
               for i in range(WORKERS)]
    producers = [ctx.Process(target=produce, args=(port, n, out), daemon=True)
                 for n in range(PRODUCERS)]
    for process in workers + producers:
        process.start()
    holding = out.get(timeout=60)
    assert holding[0] == "holding"
    os.kill(workers[0].pid, signal.SIGKILL)
    workers[0].join()
    if restart:
        while connect(port).xlen(STREAM) < PRODUCERS * PER_PRODUCER // 3:
            time.sleep(0.05)
        port = restart()
    results = [out.get(timeout=180) for _ in range(PRODUCERS)]
    for p in producers:
        p.join()
    produced = {i for kind, _, ids in results for i in ids}
    assert len(produced) == PRODUCERS * PER_PRODUCER
    r = connect(port)
    deadline = time.time() + 60
    while True:
        group = r.xinfo_groups(STREAM)[0]
        if group["pending"] == 0 and group["lag"] == 0:
            break
        assert time.time() < deadline, group
        time.sleep(0.1)
    r.set("stop", 1)
    reports = [out.get(timeout=60) for _ in range(WORKERS - 1)]
    for w in workers[1:]:
        w.join()
    processed = {i for _, _, done, _ in reports for i in done}
    acked = [i for _, _, _, acks in reports for i in acks]
    assert produced <= processed
    # Every XACK that removed an entry removed a different one.
    assert len(acked) == len(set(acked))
    # The dead worker's batch was claimed by the others.
    assert set(holding[2]) <= processed
    assert r.xpending(STREAM, GROUP)["pending"] == 0
    assert r.xlen(STREAM) <= MAXLEN + 100
    return r


@pytest.mark.parametrize("threads", ["1", "2"])
def test_iot_pipeline_with_a_worker_killed(start_oxidis, threads):
    port = start_oxidis("--io-threads", threads)
    r = run_pipeline(port)
    info = r.xinfo_stream(STREAM)
    assert info["entries-added"] == PRODUCERS * PER_PRODUCER
    assert info["length"] <= MAXLEN + 100


def test_iot_pipeline_survives_a_server_kill_with_appendfsync_always(tmp_path):
    args = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")
    server = [oxidis(tmp_path, *args)]

    def restart():
        port = server[0].port
        server[0].stop(signal.SIGKILL)
        server[0] = oxidis(tmp_path, *args, port=port)
        return port

    try:
        r = run_pipeline(server[0].port, restart)
        # A reply lost to the kill makes its producer add the reading again: never fewer.
        assert r.xinfo_stream(STREAM)["entries-added"] >= PRODUCERS * PER_PRODUCER
    finally:
        server[0].stop()


def stream_info(pair, key):
    """XINFO STREAM from both servers, which must agree but for the radix tree's inner node
    count (Oxidis keeps its nodes in a B-tree)."""
    mine, theirs = (server.client.xinfo_stream(key) for server in (pair.ox, pair.rs))
    mine.pop("radix-tree-nodes")
    theirs.pop("radix-tree-nodes")
    assert mine == theirs


@pytest.mark.parametrize("protocol", [2, 3])
def test_stream_commands_answer_as_redis_does(tmp_path, protocol):
    pair = Pair(tmp_path)
    # Replies as they come, without redis-py's parsing (which expects well-formed calls).
    mine, theirs = (redis.Redis(host="127.0.0.1", port=s.port, protocol=protocol)
                    for s in (pair.ox, pair.rs))
    mine.response_callbacks.clear()
    theirs.response_callbacks.clear()

    def same(*args):
        assert outcome(mine, *args) == outcome(theirs, *args), args

    try:
        for i in range(1, 260):
            fields = ["a", i, "b", "x" * (i % 50)] if i % 9 else ["other", i]
            same("XADD", "s", f"{i}-{i % 3}", *fields)
        same("XADD", "s", "259-5", "late", "1")
        same("XADD", "s", "259-*", "seq", "auto")
        same("XADD", "s", "0-0", "f", "v")
        same("XADD", "fresh", "0-*", "f", "v")
        same("XADD", "s", "10-1", "f", "v")
        same("XADD", "s", "abc", "f", "v")
        same("XADD", "s", "1-2-3", "f", "v")
        same("XADD", "s", "-1", "f", "v")
        same("XADD", "s", "18446744073709551616-0", "f", "v")
        same("XADD", "s", "*", "odd")
        same("XADD", "s", "*", "f", "v", "g")
        same("XADD", "s", "MAXLEN", "-1", "*", "f", "v")
        same("XADD", "s", "MAXLEN", "10", "MINID", "5", "*", "f", "v")
        same("XADD", "s", "LIMIT", "10", "*", "f", "v")
        same("XADD", "s", "MAXLEN", "10", "LIMIT", "10", "*", "f", "v")
        same("XADD", "nokey", "NOMKSTREAM", "*", "f", "v")
        same("EXISTS", "nokey")
        same("SET", "str", "v")
        same("XADD", "str", "*", "f", "v")
        same("XRANGE", "str", "-", "+")
        for query in (["-", "+"], ["10", "20"], ["(10-1", "(12"], ["-", "+", "COUNT", "7"],
                      ["50", "50"], ["-", "+", "COUNT", "0"], ["-", "+", "COUNT", "-5"],
                      ["(18446744073709551615-18446744073709551615", "+"], ["x", "+"],
                      ["-", "+", "COUNT"], ["+", "-"]):
            same("XRANGE", "s", *query)
            same("XREVRANGE", "s", *reversed(query[:2]), *query[2:])
        same("XRANGE", "s", "-", "(0-0")
        same("XLEN", "s")
        same("XDEL", "s", "3-0", "4-1", "4-1", "999-0")
        same("XDEL", "s", "bad")
        same("XTRIM", "s", "MAXLEN", "=", "200")
        same("XTRIM", "s", "MINID", "100")
        same("XTRIM", "s", "MAXLEN", "~", "50")
        same("XTRIM", "s", "MAXLEN", "~", "10", "LIMIT", "1")
        same("XTRIM", "s")
        same("XLEN", "s")
        stream_info(pair, "s")
        same("XGROUP", "CREATE", "s", "g", "0")
        same("XGROUP", "CREATE", "s", "g", "0")
        same("XGROUP", "CREATE", "missing", "g", "0")
        same("XGROUP", "CREATE", "made", "g", "$", "MKSTREAM", "ENTRIESREAD", "-2")
        same("XGROUP", "CREATE", "made", "g", "$", "MKSTREAM")
        same("XGROUP", "CREATE", "s", "late", "$", "ENTRIESREAD", "3")
        same("XGROUP", "CREATE", "s", "bad", "0", "NOSUCH")
        same("XREADGROUP", "GROUP", "g", "alice", "COUNT", "10", "STREAMS", "s", ">")
        same("XREADGROUP", "GROUP", "g", "bob", "COUNT", "3", "NOACK", "STREAMS", "s", ">")
        same("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "0")
        same("XREADGROUP", "GROUP", "g", "alice", "COUNT", "2", "STREAMS", "s", "200")
        same("XREADGROUP", "GROUP", "nogroup", "alice", "STREAMS", "s", ">")
        same("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "$")
        same("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s")
        same("XREADGROUP", "STREAMS", "s", ">")
        same("XREAD", "STREAMS", "s", ">")
        same("XREAD", "GROUP", "g", "c", "STREAMS", "s", "0")
        same("XREAD", "COUNT", "2", "STREAMS", "s", "made", "100", "0")
        same("XREAD", "COUNT", "-1", "STREAMS", "s", "$")
        same("XREAD", "BLOCK", "-1", "STREAMS", "s", "$")
        same("XREAD", "BLOCK", "x", "STREAMS", "s", "$")
        same("XPENDING", "s", "g")
        same("XPENDING", "s", "g", "-", "+", "100", "bob")
        same("XPENDING", "s", "nogroup")
        same("XPENDING", "s", "g", "-", "+")
        same("XPENDING", "s", "g", "IDLE", "x", "-", "+", "10")
        same("XACK", "s", "g", "150-0", "151-1", "1-1")
        same("XACK", "s", "g", "bad")
        same("XACK", "s", "nogroup", "150-0")
        same("XCLAIM", "s", "g", "carol", "0", "152-2", "153-0", "JUSTID")
        same("XCLAIM", "s", "g", "carol", "0", "999-0", "FORCE", "JUSTID")
        same("XCLAIM", "s", "g", "carol", "0", "200-2", "FORCE", "JUSTID", "RETRYCOUNT", "7")
        same("XCLAIM", "s", "g", "carol", "x", "152-2")
        same("XCLAIM", "s", "g", "carol", "0", "152-2", "BOGUS")
        same("XCLAIM", "s", "nogroup", "carol", "0", "152-2")
        same("XDEL", "s", "154-1")
        same("XAUTOCLAIM", "s", "g", "dave", "0", "0-0", "COUNT", "3", "JUSTID")
        same("XAUTOCLAIM", "s", "g", "dave", "0", "0-0", "COUNT", "0")
        same("XAUTOCLAIM", "s", "g", "dave", "0", "0-0", "COUNT", "1000000000000000000000")
        same("XAUTOCLAIM", "s", "nogroup", "dave", "0", "0-0")
        same("XPENDING", "s", "g")
        same("XINFO", "GROUPS", "s")
        same("XINFO", "CONSUMERS", "s", "nogroup")
        same("XINFO", "STREAM", "missing")
        same("XINFO", "STREAM", "s", "FULL", "COUNT")
        same("XGROUP", "SETID", "s", "g", "$", "ENTRIESREAD", "7")
        same("XGROUP", "SETID", "s", "nogroup", "0")
        same("XGROUP", "CREATECONSUMER", "s", "g", "erin")
        same("XGROUP", "CREATECONSUMER", "s", "g", "erin")
        same("XGROUP", "DELCONSUMER", "s", "g", "carol")
        same("XGROUP", "DELCONSUMER", "s", "g", "nobody")
        same("XGROUP", "DESTROY", "s", "late")
        same("XGROUP", "DESTROY", "s", "late")
        same("XINFO", "GROUPS", "s")
        same("XSETID", "s", "1-0")
        same("XSETID", "s", "999999-0", "ENTRIESADDED", "1", "MAXDELETEDID", "0-0")
        same("XSETID", "s", "999999-0", "ENTRIESADDED", "100000", "MAXDELETEDID", "5-0")
        same("XSETID", "missing", "1-0")
        stream_info(pair, "s")
        same("XGROUP", "HELP")
        same("XINFO", "HELP")
        same("OBJECT", "ENCODING", "s")
        same("TYPE", "s")
        scans = [c.scan(0, count=1000, _type="stream") for c in (pair.ox.client, pair.rs.client)]
        assert [sorted(keys) for _, keys in scans] == [[b"fresh", b"made", b"s"]] * 2
    finally:
        pair.stop()


def test_corrupt_stream_payload_is_refused_and_changes_nothing(port):
    r = connect(port)
    for i in range(1, 40):
        r.xadd("s", {"a": i, "b": "x" * (i % 5)} if i % 4 else {"c": i}, id=f"{i}-1")
    r.xdel("s", "5-1")
    r.xgroup_create("s", "g", id="0")
    r.xreadgroup("g", "alice", {"s": ">"}, count=5)
    before = r.xinfo_stream("s", full=True)
    payload = r.dump("s")
    body, version = payload[:-10], payload[-10:-8]
    refused = 0
    # Every single-byte change of the payload (with a matching checksum): refused with
    # Redis's error, or read as some stream that answers without harm.
    for offset in range(1, len(body)):
        bad = bytearray(body)
        bad[offset] ^= 0x5A
        candidate = bytes(bad) + version
        candidate += redis_crc64(candidate).to_bytes(8, "little")
        try:
            r.restore("copy", 0, candidate, replace=True)
        except redis.ResponseError as e:
            assert str(e) == "Bad data format", offset
            refused += 1
            continue
        r.xrange("copy")
        r.xrevrange("copy", count=3)
        r.execute_command("XINFO", "STREAM", "copy", "FULL")
        r.xadd("copy", {"f": "v"})
        r.delete("copy")
    assert refused > len(body) // 2
    assert r.exists("copy") == 0
    assert r.xinfo_stream("s", full=True) == before
    assert r.ping()


def redis_crc64(data):
    """CRC-64/Jones, reflected, as Redis's crc64."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x95AC9329AC4BC9B5 if crc & 1 else 0)
    return crc


def test_corrupt_stream_in_rdb_stops_the_server_with_a_message(tmp_path):
    ox = oxidis(tmp_path, "--save", "", "--rdbcompression", "no", "--rdbchecksum", "no")
    for i in range(10):
        ox.client.xadd("s", {"field": "value"}, id=f"{i + 1}-0")
    ox.client.save()
    ox.stop()
    data = bytearray((tmp_path / "dump.rdb").read_bytes())
    # The node's listpack follows its key (the master ID, 1-0, big-endian) and its length.
    at = data.index(bytes(7) + b"\x01" + bytes(8)) + 16
    at += 2 if data[at] >> 6 == 1 else 1
    assert data[at + 6] == 10  # the node's live entry count
    data[at + 6] = 11
    (tmp_path / "dump.rdb").write_bytes(data)
    log = tmp_path / "log.txt"
    proc = subprocess.run([BINARY, "--port", str(free_port()), "--dir", str(tmp_path),
                           "--logfile", str(log)], timeout=20)
    assert proc.returncode != 0
    assert "Corrupt packed value of RDB type 19" in log.read_text()
