"""Replication with real processes: redis-server 7.0.15 replicating from Oxidis (and Oxidis
from redis-server), fed by a writer of every type, compared key by key (Oxidis's DEBUG DIGEST
is not Redis's hash, so digests compare only between Oxidis nodes);
links cut with CLIENT KILL TYPE master come back with a partial resynchronisation."""
import socket
import time

import pytest
import redis

from test_persistence import assert_same, fill, oxidis, redis_server, snapshot

DEBUG = ("--enable-debug-command", "yes")


def wait_for(predicate, timeout=20, message="condition"):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() >= deadline:
            raise AssertionError(f"timed out waiting for {message() if callable(message) else message}")
        time.sleep(0.05)


def info(server, section="replication"):
    return server.client.info(section)


def in_sync(master, replica):
    """The replica is online and has applied everything the master has sent."""
    m, r = info(master), info(replica)
    return (r.get("master_link_status") == "up"
            and m["master_repl_offset"] > 0
            and r.get("slave_repl_offset") == m["master_repl_offset"])


def stream_writes(server):
    """Writes that reach a replica only through the stream: every type, expiry, MULTI/EXEC,
    a script, random and float commands that are propagated in their deterministic form, and
    a FLUSHDB."""
    r = server.db(5)
    r.set("s", "v", ex=1000)
    r.incrbyfloat("f", 1.5)
    r.rpush("l", *range(200))
    r.lpop("l")
    r.hset("h", mapping={f"k{i}": i for i in range(300)})
    r.hincrbyfloat("h", "k1", 0.25)
    r.sadd("set", *range(100))
    r.spop("set", 3)
    r.zadd("z", {f"m{i}": i for i in range(150)})
    r.zincrby("z", 2.5, "m7")
    r.xadd("x", {"a": 1}, id="1-1")
    r.xgroup_create("x", "g", id="0")
    r.xreadgroup("g", "c", {"x": ">"})
    r.expire("l", 500)
    r.pexpireat("h", int(time.time() * 1000) + 900_000)
    with r.pipeline(transaction=True) as p:
        p.incr("counter").lpush("queue", "job1", "job2").rpoplpush("queue", "done")
        p.execute()
    r.eval("redis.call('set', KEYS[1], ARGV[1]); redis.call('del', KEYS[2])", 2, "from-script", "s", "yes")
    server.db(3).flushdb()
    server.db(15).set("last", "one")


def without_group_progress(snap):
    """A snapshot without consumer groups' `entries-read` and `lag`: Redis 7.0 propagates
    XREADGROUP as XCLAIM, which does not carry them, so a Redis replica of a Redis master
    does not know them either."""
    for key, (kind, encoding, value, pttl) in snap.items():
        if kind == "stream":
            for group in value["groups"]:
                group["entries-read"] = group["lag"] = None
    return snap


def replicate_every_type(master, replica):
    """The initial sync of `fill`'s data, then `stream_writes` through the stream: the replica
    ends up holding what the master holds."""
    wait_for(lambda: in_sync(master, replica), message="the initial sync")
    stream_writes(master)
    assert master.client.wait(1, 5000) == 1
    wait_for(lambda: in_sync(master, replica), message="the stream")
    assert_same(without_group_progress(snapshot(master)),
                without_group_progress(snapshot(replica)), from_log=True)


def test_redis_replica_of_oxidis_gets_rdb_and_stream(tmp_path):
    (tmp_path / "ox").mkdir()
    (tmp_path / "rs").mkdir()
    master = oxidis(tmp_path / "ox", "--save", "", "--repl-diskless-sync-delay", "0", *DEBUG)
    fill(master)
    replica = redis_server(tmp_path / "rs", "--save", "", "--replicaof", "127.0.0.1", str(master.port), *DEBUG)
    try:
        replicate_every_type(master, replica)
        m = info(master)
        assert m["connected_slaves"] == 1
        assert m["slave0"]["state"] == "online"
        assert m["slave0"]["port"] == replica.port
        assert master.client.execute_command("ROLE") == [b"master", m["master_repl_offset"], [
            [b"127.0.0.1", str(replica.port).encode(), str(m["slave0"]["offset"]).encode()]]]
        assert info(master, "stats")["sync_full"] == 1
    finally:
        replica.stop()
        master.stop()


@pytest.mark.parametrize("diskless", ["yes", "no"])
def test_link_cut_by_client_kill_resumes_with_partial_resync(tmp_path, diskless):
    (tmp_path / "ox").mkdir()
    (tmp_path / "rs").mkdir()
    master = oxidis(tmp_path / "ox", "--save", "", "--repl-diskless-sync", diskless,
                    "--repl-diskless-sync-delay", "0", *DEBUG)
    replica = redis_server(tmp_path / "rs", "--save", "", "--replicaof", "127.0.0.1", str(master.port), *DEBUG)
    try:
        master.client.set("before", 1)
        wait_for(lambda: in_sync(master, replica), message="the initial sync")
        assert replica.client.client_kill_filter(_type="master") == 1
        # Written while the link is down: the backlog keeps it for the partial resync.
        for i in range(100):
            master.client.rpush("during", i)
        wait_for(lambda: in_sync(master, replica), message="the partial resync")
        stats = info(master, "stats")
        assert (stats["sync_full"], stats["sync_partial_ok"], stats["sync_partial_err"]) == (1, 1, 0)
        assert replica.client.lrange("during", 0, -1) == [str(i).encode() for i in range(100)]
        assert replica.client.get("before") == b"1"
    finally:
        replica.stop()
        master.stop()


def test_wait_and_min_replicas(tmp_path):
    (tmp_path / "ox").mkdir()
    (tmp_path / "rs").mkdir()
    master = oxidis(tmp_path / "ox", "--save", "", "--repl-diskless-sync-delay", "0")
    r = master.client
    r.set("k", "v")
    # No replica: nobody acknowledges, and WAIT gives up at its timeout.
    started = time.monotonic()
    assert r.wait(1, 200) == 0
    assert time.monotonic() - started >= 0.2
    r.config_set("min-replicas-to-write", 1)
    with pytest.raises(redis.ResponseError, match="^NOREPLICAS Not enough good replicas to write.$"):
        r.set("k", "v")
    replica = redis_server(tmp_path / "rs", "--save", "", "--replicaof", "127.0.0.1", str(master.port))
    try:
        wait_for(lambda: info(master)["connected_slaves"] == 1 and info(master)["slave0"]["state"] == "online",
                 message="the replica to come online")
        assert r.set("k", "w") is True
        assert r.wait(1, 5000) == 1
        assert r.wait(2, 100) == 1
        assert replica.client.get("k") == b"w"
        with pytest.raises(redis.ResponseError, match="^timeout is negative$"):
            r.wait(1, -1)
        with pytest.raises(redis.ResponseError, match="^value is not an integer or out of range$"):
            r.execute_command("WAIT", "x", 0)
    finally:
        replica.stop()
        master.stop()


def test_replconf_and_psync_errors(port):
    r = redis.Redis(port=port)
    assert r.execute_command("REPLCONF", "listening-port", 1234) == b"OK"
    with pytest.raises(redis.ResponseError, match="^Unrecognized REPLCONF option: bogus$"):
        r.execute_command("REPLCONF", "bogus", 1)
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'replconf' command$"):
        r.execute_command("REPLCONF", "capa")
    with pytest.raises(redis.ResponseError, match="^value is not an integer or out of range$"):
        r.execute_command("PSYNC", "?", "x")
    # REPLCONF ACK from a client that is not a replica gets no reply: the next command's
    # reply comes next.
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(b"REPLCONF ACK 5\r\nPING\r\n")
    assert raw.recv(100) == b"+PONG\r\n"
    raw.close()


def test_oxidis_replica_of_redis_gets_rdb_and_stream_and_refuses_writes(tmp_path):
    (tmp_path / "ox").mkdir()
    (tmp_path / "rs").mkdir()
    master = redis_server(tmp_path / "rs", "--save", "", "--repl-diskless-sync-delay", "0")
    fill(master)
    replica = oxidis(tmp_path / "ox", "--save", "", "--replicaof", "127.0.0.1", str(master.port))
    try:
        replicate_every_type(master, replica)
        r = replica.client
        with pytest.raises(redis.exceptions.ReadOnlyError, match="^You can't write against a read only replica.$"):
            r.set("k", "v")
        role = r.execute_command("ROLE")
        assert role[:4] == [b"slave", b"127.0.0.1", master.port, b"connected"]
        assert role[4] == info(replica)["slave_repl_offset"]
        with pytest.raises(redis.ResponseError, match="^WAIT cannot be used with replica instances"):
            r.wait(1, 0)
        # Cut by the replica: it continues where it was.
        assert r.client_kill_filter(_type="master") == 1
        master.client.set("after-cut", 1)
        wait_for(lambda: in_sync(master, replica), message="the partial resync")
        assert r.get("after-cut") == b"1"
        stats = info(master, "stats")
        assert (stats["sync_full"], stats["sync_partial_ok"]) == (1, 1)
    finally:
        replica.stop()
        master.stop()


def test_chain_and_promotion_keep_partial_resync(tmp_path):
    """redis-server -> Oxidis -> Oxidis; REPLICAOF NO ONE on the middle node makes it a
    master whose replica continues from the old history (PSYNC2), and its writes flow on."""
    for name in ("rs", "a", "b"):
        (tmp_path / name).mkdir()
    top = redis_server(tmp_path / "rs", "--save", "", "--repl-diskless-sync-delay", "0")
    middle = oxidis(tmp_path / "a", "--save", "", "--repl-diskless-sync-delay", "0",
                    "--replicaof", "127.0.0.1", str(top.port), *DEBUG)
    bottom = oxidis(tmp_path / "b", "--save", "", "--replicaof", "127.0.0.1", str(middle.port), *DEBUG)
    try:
        top.client.set("k", "top")
        wait_for(lambda: in_sync(top, middle) and in_sync(middle, bottom),
                 message=lambda: f"the chain: {info(top)} {info(middle)} {info(bottom)}")
        assert bottom.client.get("k") == b"top"
        assert info(middle)["master_repl_offset"] == info(top)["master_repl_offset"]
        old_id = info(top)["master_replid"]
        assert info(middle)["master_replid"] == old_id
        assert middle.client.replicaof("NO", "ONE") == b"OK"
        m = info(middle)
        assert (m["role"], m["master_replid2"]) == ("master", old_id)
        assert m["second_repl_offset"] == m["master_repl_offset"] + 1
        middle.client.set("k", "middle")
        wait_for(lambda: in_sync(middle, bottom), message="the promoted master's stream")
        assert bottom.client.get("k") == b"middle"
        assert info(middle, "stats")["sync_partial_ok"] == 1
        assert middle.client.execute_command("DEBUG", "DIGEST") == bottom.client.execute_command("DEBUG", "DIGEST")
        assert top.client.get("k") == b"top"
    finally:
        bottom.stop()
        middle.stop()
        top.stop()


def test_replicaof_errors_and_a_master_that_is_not_there(start_oxidis):
    port = start_oxidis()
    r = redis.Redis(port=port)
    with pytest.raises(redis.ResponseError, match="^Invalid master port$"):
        r.replicaof("127.0.0.1", "x")
    with pytest.raises(redis.ResponseError, match="^Invalid master port$"):
        r.replicaof("127.0.0.1", 70000)
    # Nothing listens there: the link keeps trying in the background, clients are served.
    from conftest import free_port
    closed = free_port()
    assert r.replicaof("127.0.0.1", closed) == b"OK"
    assert r.replicaof("127.0.0.1", closed) == b"OK Already connected to specified master"
    time.sleep(1.5)
    i = r.info("replication")
    assert (i["role"], i["master_link_status"], i["master_port"]) == ("slave", "down", closed)
    assert r.get("anything") is None
    assert r.execute_command("ROLE")[3] in (b"connect", b"connecting")
    with pytest.raises(redis.ResponseError, match="^NOMASTERLINK Can't SYNC while not connected with my master$"):
        r.execute_command("PSYNC", "?", "-1")
    r.config_set("replica-serve-stale-data", "no")
    with pytest.raises(redis.exceptions.MasterDownError,
                       match="^Link with MASTER is down and replica-serve-stale-data is set to 'no'.$"):
        r.get("anything")
    # Commands that serve no data, as INFO, still run; PING does not (as in Redis).
    with pytest.raises(redis.exceptions.MasterDownError):
        r.ping()
    assert r.info("replication")["master_link_status"] == "down"
    assert r.replicaof("NO", "ONE") == b"OK"
    assert r.set("k", "v") is True
    assert r.info("replication")["role"] == "master"


def test_replica_restarted_from_its_dump_continues_with_a_partial_resync(tmp_path):
    """The dump keeps the replication history (repl-id, repl-offset aux fields): a replica
    restarted from it asks its master to continue, and gets +CONTINUE."""
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    master = oxidis(tmp_path / "m", "--save", "", "--repl-diskless-sync-delay", "0")
    args = ("--save", "", "--replicaof", "127.0.0.1", str(master.port))
    replica = oxidis(tmp_path / "r", *args)
    try:
        master.client.set("k", 1)
        wait_for(lambda: in_sync(master, replica), message="the initial sync")
        try:
            replica.client.shutdown(save=True)
        except redis.ConnectionError:
            pass
        replica.proc.wait(timeout=10)
        master.client.set("while-down", 2)
        replica = oxidis(tmp_path / "r", *args)
        wait_for(lambda: in_sync(master, replica), message="the resync after the restart")
        assert replica.client.mget("k", "while-down") == [b"1", b"2"]
        stats = info(master, "stats")
        assert (stats["sync_full"], stats["sync_partial_ok"]) == (1, 1)
    finally:
        replica.stop()
        master.stop()


@pytest.mark.parametrize("oxidis_is_master", [True, False])
def test_failover_hands_the_role_to_the_other_server(tmp_path, oxidis_is_master):
    """FAILOVER between Oxidis and redis-server, both ways: the master holds writes until its
    replica caught up, then follows it; the replica takes over on `PSYNC ... FAILOVER` and
    serves its old master a partial resynchronisation; no write is lost."""
    (tmp_path / "ox").mkdir()
    (tmp_path / "rs").mkdir()
    start_master, start_replica = (oxidis, redis_server) if oxidis_is_master else (redis_server, oxidis)
    master = start_master(tmp_path / ("ox" if oxidis_is_master else "rs"), "--save", "",
                          "--repl-diskless-sync-delay", "0")
    replica = start_replica(tmp_path / ("rs" if oxidis_is_master else "ox"), "--save", "",
                            "--replicaof", "127.0.0.1", str(master.port))
    try:
        for i in range(100):
            master.client.rpush("jobs", i)
        wait_for(lambda: in_sync(master, replica), message="the initial sync")
        with pytest.raises(redis.ResponseError, match="^FAILOVER is not valid when server is a replica.$"):
            replica.client.execute_command("FAILOVER")
        with pytest.raises(redis.ResponseError, match="^FAILOVER target HOST and PORT is not a replica.$"):
            master.client.execute_command("FAILOVER", "TO", "127.0.0.1", master.port)
        assert master.client.execute_command("FAILOVER", "TO", "127.0.0.1", replica.port, "TIMEOUT", 5000) == b"OK"
        wait_for(lambda: info(master)["master_failover_state"] == "no-failover", message="the failover to end")
        assert info(replica)["role"] == "master"
        assert info(master)["role"] == "slave"
        wait_for(lambda: in_sync(replica, master), message="the old master to follow the new one")
        stats = info(replica, "stats")
        assert (stats["sync_full"], stats["sync_partial_ok"]) == (0, 1)
        replica.client.rpush("jobs", "after")
        wait_for(lambda: in_sync(replica, master), message="the new master's stream")
        assert master.client.lrange("jobs", 0, -1) == [str(i).encode() for i in range(100)] + [b"after"]
        with pytest.raises(redis.exceptions.ReadOnlyError):
            master.client.rpush("jobs", "refused")
        with pytest.raises(redis.ResponseError, match="^No failover in progress.$"):
            replica.client.execute_command("FAILOVER", "ABORT")
    finally:
        replica.stop()
        master.stop()


class Tamperer:
    """A TCP relay between a replica and its real master that damages what the master sends
    when told to: a byte of the next full sync's RDB flipped (`damage_rdb`), or bytes that
    are no command put into the stream (`inject`). What it damages is the master's real
    output; nothing here answers in the master's place."""

    def __init__(self, master_port):
        import threading
        self.master_port = master_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.damage_rdb = False
        self.links = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        import threading
        while True:
            try:
                replica, _ = self.listener.accept()
            except OSError:
                return
            master = socket.create_connection(("127.0.0.1", self.master_port))
            with self.lock:
                self.links.append(replica)
            threading.Thread(target=self.pump, args=(replica, master, False), daemon=True).start()
            threading.Thread(target=self.pump, args=(master, replica, True), daemon=True).start()

    def pump(self, source, sink, from_master):
        held = b""
        try:
            while chunk := source.recv(65536):
                if from_master and self.damage_rdb:
                    chunk = self.damage(held + chunk)
                    held, chunk = chunk if isinstance(chunk, tuple) else (b"", chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def damage(self, data):
        """`data` with a byte of the RDB payload flipped, or (bytes to hold back, bytes to
        send) while the payload has not come far enough. Nothing before the payload's `$`
        header line contains a `$` (+PONG, +OK, +FULLRESYNC, newlines)."""
        header = data.find(b"$")
        if header < 0:
            return data
        body = data.find(b"\r\n", header)
        if body < 0 or len(data) <= body + 2 + 200:
            return data[header:], data[:header]
        damaged = bytearray(data)
        damaged[body + 2 + 200] ^= 0xFF
        self.damage_rdb = False
        return bytes(damaged)

    def inject(self, data):
        with self.lock:
            for replica in self.links:
                try:
                    replica.sendall(data)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def test_replica_keeps_its_data_when_its_master_sends_damaged_bytes(tmp_path):
    """A full sync whose RDB was damaged on the way leaves the replica's old data in place
    (it logs why and tries again); bytes that are no command in the stream drop the link,
    which comes back with a partial resynchronisation."""
    (tmp_path / "rs").mkdir()
    (tmp_path / "ox").mkdir()
    log = tmp_path / "oxidis.log"
    master = redis_server(tmp_path / "rs", "--save", "", "--repl-diskless-sync", "no")
    for i in range(2000):
        master.client.set(f"key:{i}", "x" * 20)
    replica = oxidis(tmp_path / "ox", "--save", "", "--logfile", str(log))
    tamperer = Tamperer(master.port)
    try:
        replica.client.set("old", "data")
        tamperer.damage_rdb = True
        assert replica.client.replicaof("127.0.0.1", tamperer.port) == b"OK"
        wait_for(lambda: "damaged, keeping the old data" in log.read_text(), message="the damaged RDB")
        assert replica.client.get("old") == b"data"
        assert replica.client.dbsize() == 1
        # The next attempt gets an undamaged RDB.
        wait_for(lambda: in_sync(master, replica), message="the retried full sync")
        assert replica.client.dbsize() == 2000
        assert replica.client.get("old") is None
        assert info(master, "stats")["sync_full"] == 2
        # Not a command: the replica drops the link, and continues where it was.
        tamperer.inject(b"*-5x\r\n")
        wait_for(lambda: "protocol error from MASTER: invalid multibulk length" in log.read_text(),
                 message="the protocol error")
        master.client.set("after", "garbage")
        wait_for(lambda: in_sync(master, replica) and replica.client.get("after") == b"garbage",
                 message="the partial resync")
        stats = info(master, "stats")
        assert (stats["sync_full"], stats["sync_partial_ok"]) == (2, 1)
        assert replica.client.dbsize() == 2001
    finally:
        tamperer.close()
        replica.stop()
        master.stop()


def test_psync_with_a_history_we_do_not_have_gets_a_full_resync(tmp_path):
    """A redis-server replica moved from another master asks to continue that master's
    history: Oxidis does not have it, counts a refused partial resync, and sends a full one."""
    for name in ("a", "b", "ox"):
        (tmp_path / name).mkdir()
    other = redis_server(tmp_path / "a", "--save", "", "--repl-diskless-sync-delay", "0")
    master = oxidis(tmp_path / "ox", "--save", "", "--repl-diskless-sync-delay", "0")
    replica = redis_server(tmp_path / "b", "--save", "", "--replicaof", "127.0.0.1", str(other.port))
    try:
        other.client.set("from", "other")
        master.client.set("from", "oxidis")
        wait_for(lambda: in_sync(other, replica), message="the first master's sync")
        asked = info(replica)["master_replid"]
        assert asked == info(other)["master_replid"] != info(master)["master_replid"]
        assert replica.client.replicaof("127.0.0.1", master.port) == b"OK"
        wait_for(lambda: in_sync(master, replica), message="the full resync")
        stats = info(master, "stats")
        assert (stats["sync_full"], stats["sync_partial_ok"], stats["sync_partial_err"]) == (1, 0, 1)
        assert replica.client.get("from") == b"oxidis"
    finally:
        replica.stop()
        master.stop()
        other.stop()


def test_diskless_load_swapdb_keeps_old_data_until_the_new_is_whole(tmp_path):
    """`repl-diskless-load swapdb`: the RDB loads from the socket beside the old data. While
    the master's history is the one the old data came from, reads are served from the old
    data (async_loading); a transfer cut in the middle leaves the old data in place; a whole
    one replaces it."""
    (tmp_path / "rs").mkdir()
    (tmp_path / "ox").mkdir()
    master = redis_server(tmp_path / "rs", "--save", "", "--repl-diskless-sync-delay", "0", *DEBUG)
    replica = oxidis(tmp_path / "ox", "--save", "", "--repl-diskless-load", "swapdb",
                     "--replicaof", "127.0.0.1", str(master.port))
    try:
        master.client.set("old", "1")
        wait_for(lambda: in_sync(master, replica), message="the first sync")
        master.client.execute_command("DEBUG", "POPULATE", 2000, "key", 1000)
        master.client.config_set("rdb-key-save-delay", 2000)  # 2000 keys: 4 s to produce
        master.client.config_set("repl-backlog-size", 16384)
        # The link cut, then more written than the backlog keeps: the replica must sync in
        # full, from the history its data came from.
        with master.client.pipeline(transaction=True) as p:
            p.execute_command("CLIENT", "KILL", "TYPE", "replica")
            for i in range(10):
                p.set(f"big:{i}", "x" * 16384)
            p.execute()
        wait_for(lambda: info(replica, "persistence")["async_loading"] == 1, message="async loading")
        # The old data is served meanwhile.
        assert info(replica, "persistence")["loading"] == 0
        assert replica.client.get("old") == b"1"
        assert replica.client.exists("key:1") == 0
        # redis-py retries a -LOADING reply (BusyLoadingError is a ConnectionError): not here.
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        once = redis.Redis(port=replica.port, retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.exceptions.BusyLoadingError, match="^Redis is loading the dataset in memory$"):
            once.config_set("repl-diskless-load", "disabled")
        with pytest.raises(redis.exceptions.BusyLoadingError):
            once.replicaof("NO", "ONE")
        # Cut in the middle: the old data stays.
        master.client.config_set("repl-diskless-sync-delay", 3)
        assert master.client.client_kill_filter(_type="replica") == 1
        wait_for(lambda: info(replica, "persistence")["async_loading"] == 0, message="the load to stop")
        assert replica.client.get("old") == b"1"
        assert replica.client.exists("key:1") == 0
        master.client.config_set("rdb-key-save-delay", 0)
        wait_for(lambda: in_sync(master, replica), message="the whole sync", timeout=30)
        assert replica.client.dbsize() == master.client.dbsize() == 2011
        assert info(master, "stats")["sync_full"] == 3
    finally:
        replica.stop()
        master.stop()
