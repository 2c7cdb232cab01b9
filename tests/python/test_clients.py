"""The real oxidis binary driven by redis-py (RESP2 and RESP3) and redis-cli, the way tutorials use them."""
import json
import subprocess
import sys
import time

import pytest
import redis


def test_strict_redis_json_shared_between_processes(port):
    r = redis.StrictRedis(host="127.0.0.1", port=port, db=0)
    r.set("data", json.dumps({"a": 123, "b": 321}))
    reader = ("import json, redis, sys; r = redis.Redis(host='127.0.0.1', port=int(sys.argv[1]), db=0);"
              "print(json.loads(r.get('data'))['b'])")
    out = subprocess.run([sys.executable, "-c", reader, str(port)], capture_output=True, text=True, check=True)
    assert out.stdout == "321\n"


@pytest.mark.parametrize("protocol", [2, 3])
def test_tutorial_basics(port, protocol):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
    assert r.ping() is True
    assert r.set("Temperature", 25) is True
    assert r.get("Temperature") == b"25"
    assert r.incr("Temperature") == 26
    assert r.get("missing") is None
    assert r.set("k", "v", nx=True) is True
    assert r.set("k", "w", nx=True) is None
    assert r.mget("Temperature", "missing", "k") == [b"26", None, b"v"]
    assert r.expire("k", 100) is True
    assert r.ttl("k") == 100
    assert r.delete("k", "missing") == 1
    assert r.exists("k") == 0
    assert r.incrbyfloat("f", 1.5) == 1.5
    with pytest.raises(redis.ResponseError, match="^value is not an integer or out of range$"):
        r.incr("f")


def test_resp3_hello_map(port):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=3)
    hello = r.execute_command("HELLO", 3)
    assert hello[b"proto"] == 3
    assert hello[b"server"] == b"redis"
    assert hello[b"version"] == b"7.0.15"
    assert r.client_id() == hello[b"id"]


def test_client_list_and_info_parse(port):
    r = redis.Redis(host="127.0.0.1", port=port, client_name="dashboard")
    clients = r.client_list()
    assert [c["name"] for c in clients] == ["dashboard"]
    info = r.info()
    assert info["redis_version"] == "7.0.15"
    assert info["connected_clients"] == 1
    r.set("a", 1)
    assert r.info("keyspace") == {"db0": {"keys": 1, "expires": 0, "avg_ttl": 0}}


def test_string_encodings_and_memory_subcommands(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    r.set("enc:int", "12345")
    r.set("enc:44", "x" * 44)
    r.set("enc:45", "x" * 45)
    r.set("enc:appended", "x")
    r.append("enc:appended", "y")
    assert [r.object("encoding", k) for k in ("enc:int", "enc:44", "enc:45", "enc:appended")] == [
        b"int", b"embstr", b"raw", b"raw"]
    assert [r.get(k) for k in ("enc:int", "enc:44", "enc:45", "enc:appended")] == [
        b"12345", b"x" * 44, b"x" * 45, b"xy"]
    assert r.memory_purge() is True
    assert r.execute_command("MEMORY", "MALLOC-STATS") == b"Stats not supported for the current allocator"
    help_lines = r.execute_command("MEMORY", "HELP")
    assert help_lines[0] == b"MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert help_lines[5:7] == [b"PURGE", b"    Attempt to purge dirty pages for reclamation by the allocator."]
    assert help_lines[-2:] == [b"HELP", b"    Prints this help."]
    with pytest.raises(redis.ResponseError) as error:
        r.execute_command("MEMORY", "PURGE", "now")
    assert str(error.value) == "wrong number of arguments for 'memory|purge' command"
    assert r.get("enc:44") == b"x" * 44


def load(r, count, db_prefix):
    with r.pipeline(transaction=False) as pipe:
        for i in range(count):
            pipe.set(f"{db_prefix}:{i:08}", "v" * 32)
        pipe.execute()


def test_memory_stats_doctor_and_info_memory(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    empty = r.memory_stats()
    assert list(empty)[:10] == [
        "peak.allocated", "total.allocated", "startup.allocated", "replication.backlog",
        "clients.slaves", "clients.normal", "cluster.links", "aof.buffer", "lua.caches",
        "functions.caches"]
    assert list(empty)[10:] == [
        "overhead.total", "keys.count", "keys.bytes-per-key", "dataset.bytes",
        "dataset.percentage", "peak.percentage", "allocator.allocated", "allocator.active",
        "allocator.resident", "allocator-fragmentation.ratio", "allocator-fragmentation.bytes",
        "allocator-rss.ratio", "allocator-rss.bytes", "rss-overhead.ratio", "rss-overhead.bytes",
        "fragmentation", "fragmentation.bytes"]
    assert empty["keys.count"] == 0 and empty["keys.bytes-per-key"] == 0
    assert r.execute_command("MEMORY", "DOCTOR").startswith(
        b"Hi Sam, this instance is empty or is using very little memory")

    load(r, 100_000, "keep")
    r.select(1)
    load(r, 300_000, "drop")
    r.select(0)
    stats = r.memory_stats()
    assert stats["keys.count"] == 400_000
    assert stats["dataset.bytes"] == stats["total.allocated"] - stats["overhead.total"]
    assert stats["keys.bytes-per-key"] == (stats["total.allocated"] - stats["startup.allocated"]) // 400_000
    assert stats["peak.allocated"] >= stats["total.allocated"] > 400_000 * 80
    # Each key's node is in the table's share; the 16-byte key and 32-byte value are data.
    tables = [stats["db.0"], stats["db.1"]]
    assert [sorted(t) for t in tables] == [
        ["overhead.hashtable.expires", "overhead.hashtable.main", "overhead.hashtable.slot-to-keys"]] * 2
    assert 100_000 * 40 < tables[0]["overhead.hashtable.main"] < 100_000 * 80
    assert 300_000 * 40 < tables[1]["overhead.hashtable.main"] < 300_000 * 80
    assert tables[1]["overhead.hashtable.expires"] == 0
    info = r.info("memory")
    assert info["used_memory_startup"] == stats["startup.allocated"]
    assert 0 < info["used_memory_overhead"] < info["used_memory"]
    assert info["used_memory_peak"] >= stats["peak.allocated"]

    r.select(1)
    r.flushdb()
    after = r.memory_stats()
    assert "db.1" not in after and after["keys.count"] == 100_000
    assert after["peak.allocated"] >= stats["peak.allocated"] > 1.5 * after["total.allocated"]
    assert float(after["peak.percentage"]) < 66.7
    report = r.execute_command("MEMORY", "DOCTOR")
    assert report.startswith(b"Sam, I detected a few issues in this Redis instance memory implants:\n\n"
                             b" * Peak memory: In the past this instance used more than 150% the memory")
    assert report.endswith(b"I'm here to keep you safe, Sam. I want to help you.\n")
    r.config_resetstat()
    assert r.memory_stats()["peak.allocated"] < stats["peak.allocated"]


def test_idle_server_gives_back_the_memory_of_a_deleted_key(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    value = b"x" * 1024
    for _ in range(40):
        r.rpush("big", *[value] * 5000)
    full = r.info("memory")["used_memory_rss"]
    assert full > 200_000 * 1024
    r.delete("big")
    # Freed pages stay with the process for 10 s (as Redis's jemalloc keeps them), then the
    # cron hands them back although no command runs meanwhile.
    deadline = time.time() + 20
    while r.info("memory")["used_memory_rss"] > full // 4 and time.time() < deadline:
        time.sleep(0.5)
    assert r.info("memory")["used_memory_rss"] < full // 4


def test_memory_freed_and_soon_used_again_is_not_handed_back(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    pid = r.info("server")["process_id"]

    def fill():
        # 50,000 values of 1 KB: 12,500 pages or more, each a page fault when fresh. Filling
        # them takes well under a second, so each drain lasts about 6 s, under the 10 s purge.
        for _ in range(10):
            r.rpush("queue", *[b"x" * 1024] * 5000)

    def page_faults():
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[7])

    # mimalloc places the first refills partly in fresh pages (5,000-7,000 faults each)
    # until the pages it cycles through are all touched; refills with no wait reach that
    # steady state, in which a refill costs almost no faults unless the pages were purged.
    for _ in range(3):
        fill()
        r.delete("queue")
    # A queue that drains and fills again every few seconds keeps its pages: the second
    # drain happens 7 s after the first, and its pages must not be purged 10 s after the
    # first (mimalloc's own deadline) while they wait to be used again.
    fill()
    r.delete("queue")
    time.sleep(6)
    fill()
    r.delete("queue")
    time.sleep(6)
    before = page_faults()
    fill()
    assert page_faults() - before < 2_000


def test_pipeline_and_scan_iter(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    with r.pipeline(transaction=False) as pipe:
        for i in range(500):
            pipe.set(f"sensor:{i}", i)
        assert pipe.execute() == [True] * 500
    assert sorted(r.scan_iter(match="sensor:4??", count=50)) == sorted(f"sensor:{i}".encode() for i in range(400, 500))


def cli(port, *args, resp3=False):
    cmd = ["redis-cli", "-p", str(port)] + (["-3"] if resp3 else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_redis_cli(port):
    assert cli(port, "ping") == "PONG\n"
    assert cli(port, "set", "k", "v") == "OK\n"
    assert cli(port, "get", "k") == "v\n"
    assert cli(port, "get", "nothing") == "\n"
    assert cli(port, "incr", "n") == "1\n"
    # redis-cli prints an error reply followed by an empty line, as against redis-server.
    assert cli(port, "get") == "ERR wrong number of arguments for 'get' command\n\n"
    hello = cli(port, "hello", "3", resp3=True).splitlines()
    assert hello[:3] == ["server redis", "version 7.0.15", "proto 3"]
    assert hello[4:] == ["mode standalone", "role master", "modules "]
    assert cli(port, "--no-raw", "get", "nothing", resp3=True) == "(nil)\n"
    assert cli(port, "--no-raw", "set", "x", "1", resp3=True) == "OK\n"


def test_unix_socket(start_oxidis, tmp_path):
    import os
    import stat
    path = tmp_path / "oxidis.sock"
    port = start_oxidis("--unixsocket", str(path), "--unixsocketperm", "700")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    r = redis.Redis(unix_socket_path=str(path))
    assert r.set("k", "via unix") is True
    assert redis.Redis(port=port).get("k") == b"via unix"
    cli = subprocess.run(["redis-cli", "-s", str(path), "GET", "k"], capture_output=True, text=True,
                         check=True)
    assert cli.stdout == "via unix\n"
    assert r.client_info()["addr"] == f"{path}:0"


def test_maxclients_follows_the_open_files_limit(tmp_path):
    """As Redis: with `ulimit -n 512` and the default maxclients 10000, maxclients drops to
    512 - 32 reserved descriptors."""
    import resource
    import socket
    import time
    from conftest import BINARY, free_port
    port = free_port()

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))

    proc = subprocess.Popen([BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path)], preexec_fn=low_limit,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        assert redis.Redis(port=port).config_get("maxclients") == {"maxclients": "480"}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "maxclients has been reduced to 480 to compensate for low ulimit" in out


def send_and_read_until_closed(port, payload):
    """Sends raw bytes; returns everything the server sent before closing (or b"?" if the
    connection was still open after 5 s)."""
    import socket
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    s.sendall(payload)
    received = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return received
            received += chunk
    except socket.timeout:
        return received + b"?"
    except ConnectionResetError:
        return received
    finally:
        s.close()


@pytest.mark.parametrize("payload", [
    # What a web page makes a browser send to 127.0.0.1:6379, commands in the body.
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1:6379\r\nContent-Length: 18\r\n\r\n\r\nSET pwned 1\r\n",
    b"Host: x\r\nPING\r\nSET pwned 1\r\n",
    b"*3\r\n$4\r\npost\r\n$1\r\n/\r\n$8\r\nHTTP/1.1\r\n*3\r\n$3\r\nSET\r\n$5\r\npwned\r\n$1\r\n1\r\n",
])
def test_http_requests_close_the_connection_without_reply(port, payload):
    assert send_and_read_until_closed(port, payload) == b""
    r = redis.Redis(port=port)
    assert r.get("pwned") is None
    assert r.ping()


def test_post_in_a_pipeline_runs_nothing_after_it(port):
    pipeline = b"SET a 1\r\nPOST / HTTP/1.1\r\nSET b 1\r\n"
    assert send_and_read_until_closed(port, pipeline) == b""
    r = redis.Redis(port=port)
    assert (r.get("a"), r.get("b")) == (b"1", None)
    assert r.ping()


def test_debug_error_maps_each_prefix_to_redis_py_exceptions(start_oxidis):
    """redis-py's own tests use DEBUG ERROR to check how it maps error prefixes."""
    r = redis.Redis(port=start_oxidis("--enable-debug-command", "yes"))
    for message, exception in [
        ("ERR plain", redis.ResponseError),
        ("NOSCRIPT No matching script", redis.exceptions.NoScriptError),
        ("READONLY You can't write against a read only replica.", redis.exceptions.ReadOnlyError),
        ("LOADING Redis is loading the dataset in memory", redis.exceptions.BusyLoadingError),
        ("OOM command not allowed", redis.exceptions.OutOfMemoryError),
    ]:
        with pytest.raises(exception) as raised:
            r.execute_command("DEBUG", "ERROR", message)
        assert type(raised.value) is exception
    # Not counted as error replies, as in Redis (redis-py's own reconnections leave ERR ones).
    assert set(r.info("errorstats")) <= {"errorstat_ERR"}


def test_module_list_is_empty_and_load_fails_as_redis_does(port):
    r = redis.Redis(port=port)
    assert r.module_list() == []
    with pytest.raises(redis.ResponseError, match="^Error loading the extension. Please check the server logs.$"):
        r.module_load("/nonexistent/module.so")
    with pytest.raises(redis.ResponseError, match="^Error unloading module: no such module with that name$"):
        r.module_unload("search")
    assert cli(port, "LOLWUT") == "Redis ver. 7.0.15\n"
    assert cli(port, "LOLWUT", "VERSION", "x") == "ERR value is not an integer or out of range\n"


def test_client_pause_write_holds_writers_as_blocked_clients(port):
    r = redis.Redis(port=port)
    assert r.client_pause(5000, all=False) is True
    writer = redis.Connection(port=port)
    writer.connect()
    writer.send_command("SET", "k", "v")
    deadline = time.time() + 5
    while r.info("clients")["blocked_clients"] != 1:
        assert time.time() < deadline, "the writer is not held"
        time.sleep(0.01)
    # Reads and read-only scripts go on.
    assert r.get("k") is None
    assert r.eval("#!lua flags=no-writes\nreturn 12", 0) == 12
    assert r.client_unpause() == b"OK"
    assert writer.read_response() == b"OK"
    assert r.info("clients")["blocked_clients"] == 0
    assert r.get("k") == b"v"


def test_oom_score_adj_follows_the_setting(tmp_path):
    from test_persistence import oxidis
    server = oxidis(tmp_path, "--save", "")
    path = f"/proc/{server.proc.pid}/oom_score_adj"

    def score():
        with open(path) as f:
            return int(f.read())

    base = score()
    r = server.client
    r.config_set("oom-score-adj-values", "10 20 30")
    r.config_set("oom-score-adj", "yes")
    assert score() == base + 10
    r.config_set("oom-score-adj", "absolute")
    assert score() == 10
    r.config_set("oom-score-adj-values", "15 20 30")
    assert score() == 15
    r.config_set("oom-score-adj", "no")
    assert score() == base
    server.stop()
