"""Durability under load and under a full disk, side by side with redis-server 7.0.15 where
both must behave alike: with `appendfsync always` no reply leaves before its data is synced,
and the clients ready together share one fsync; when the disk fills up, writes are refused
with -MISCONF (or, under `always`, the server exits) and no acknowledged write is lost."""
import os
import signal
import subprocess
import threading
import time

import pytest
import redis

from test_aof import check_aof
from test_persistence import oxidis, redis_server

SERVERS = {"oxidis": oxidis, "redis-server": redis_server}

MISCONF_AOF = "MISCONF Errors writing to the AOF file: No space left on device"
MISCONF_RDB = (
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist "
    "to disk. Commands that may modify the data set are disabled, because this instance is "
    "configured to report errors during writes if RDB snapshotting fails "
    "(stop-writes-on-bgsave-error option). Please check the Redis logs for details about the "
    "RDB error.")


@pytest.mark.parametrize("threads", ["1", "2"])
def test_no_reply_leaves_before_its_write_is_synced(tmp_path, threads):
    """While the AOF flush of one client's SET is held up, another client's GET that already
    sees the value gets no reply until the SET is on disk, with commands on one thread or two."""
    ox = oxidis(tmp_path, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--io-threads", threads, "--enable-debug-command", "yes")
    try:
        ox.client.set("warm", "up")
        ox.client.execute_command("DEBUG", "AOF-FLUSH-SLEEP", 500_000)
        writer, reader = redis.Redis(port=ox.port), redis.Redis(port=ox.port)
        writer.ping()
        reader.ping()
        done = {}

        def write():
            writer.set("k", "v")
            done["write"] = time.monotonic()

        started = time.monotonic()
        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(0.1)
        value = reader.get("k")
        done["read"] = time.monotonic()
        thread.join(timeout=10)
        assert done["write"] - started >= 0.5
        if value is not None:
            # The reader saw the write: its reply may not have left before the write's flush.
            assert value == b"v"
            assert done["read"] - started >= 0.5, done["read"] - started
        ox.client.execute_command("DEBUG", "AOF-FLUSH-SLEEP", 0)
    finally:
        ox.stop()


@pytest.mark.parametrize("threads", ["1", "2"])
def test_one_fsync_serves_the_clients_ready_together(tmp_path, threads):
    """16 clients send a SET at once while each AOF flush takes 0.1 s: one flush per command
    would take 1.6 s; flushes shared by the clients ready together take a few."""
    ox = oxidis(tmp_path, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--io-threads", threads, "--enable-debug-command", "yes")
    try:
        clients = [redis.Redis(port=ox.port) for _ in range(16)]
        for c in clients:
            c.ping()
        ox.client.execute_command("DEBUG", "AOF-FLUSH-SLEEP", 100_000)
        barrier = threading.Barrier(len(clients) + 1)
        replies = []

        def write(n, c):
            barrier.wait()
            replies.append(c.set(f"k{n}", n))

        threads_ = [threading.Thread(target=write, args=(n, c)) for n, c in enumerate(clients)]
        for t in threads_:
            t.start()
        barrier.wait()
        started = time.monotonic()
        for t in threads_:
            t.join(timeout=10)
        took = time.monotonic() - started
        assert replies == [True] * 16
        assert took < 0.8, took
        ox.client.execute_command("DEBUG", "AOF-FLUSH-SLEEP", 0)
        assert ox.client.mget([f"k{n}" for n in range(16)]) == [b"%d" % n for n in range(16)]
    finally:
        ox.stop()


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB tmpfs for the server's directory (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root, as CI has")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def leave_free(disk, free):
    """Fills `disk` with a file until only `free` bytes are left; returns the file."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    size = stat.f_bavail * stat.f_frsize - free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(size, 0))
    return filler


def write_until_refused(r, values, limit=400):
    """SETs 64 KB values until one is refused; returns the acknowledged keys and the error."""
    acked = []
    for n in range(limit):
        key = f"k{n}"
        try:
            r.set(key, values(n))
        except (redis.exceptions.ResponseError, redis.exceptions.ConnectionError) as e:
            return acked, e
        acked.append(key)
    pytest.fail(f"{limit} writes of 64 KB all went through")


def value_of(n):
    return (b"%06d" % n) * (64 * 1024 // 6)


def wait_for(check, seconds=10):
    deadline = time.time() + seconds
    while not check():
        assert time.time() < deadline
        time.sleep(0.1)


@pytest.mark.parametrize("server", SERVERS)
def test_full_disk_refuses_writes_under_everysec_then_recovers(small_disk, server):
    """Under `everysec` a failed AOF write keeps its data and refuses writes with -MISCONF
    (reads still served) until a retry succeeds; the server recovers by itself once space is
    freed, and after a restart every acknowledged write is there."""
    start = SERVERS[server]
    s = start(small_disk, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "")
    filler = leave_free(small_disk, 1 << 20)
    acked, error = write_until_refused(s.client, value_of)
    assert str(error) == MISCONF_AOF
    assert s.client.info("persistence")["aof_last_write_status"] == "err"
    assert s.client.get(acked[0]) == value_of(0)
    filler.unlink()
    # Nothing is sent meanwhile: the server retries on its own.
    wait_for(lambda: s.client.info("persistence")["aof_last_write_status"] == "ok")
    assert s.client.set("after", "recovery")
    time.sleep(2.5)  # two everysec fsyncs
    s.stop(signal.SIGKILL)
    check_aof(small_disk)
    s = start(small_disk, "--appendonly", "yes", "--save", "")
    try:
        for key in acked:
            assert s.client.get(key) == value_of(int(key[1:])), key
        assert s.client.get("after") == b"recovery"
    finally:
        s.stop()


@pytest.mark.parametrize("server", SERVERS)
def test_full_disk_under_always_exits_and_keeps_every_acknowledged_write(small_disk, tmp_path, server):
    """Under `always` a write that cannot reach the AOF cannot be taken back from clients that
    saw it: the server logs Redis's line and exits; once space is freed it restarts with every
    acknowledged write."""
    start = SERVERS[server]
    log = tmp_path / f"{server}.log"
    s = start(small_disk, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
              "--logfile", str(log))
    filler = leave_free(small_disk, 1 << 20)
    acked, error = write_until_refused(s.client, value_of)
    assert isinstance(error, redis.exceptions.ConnectionError), error
    assert s.proc.wait(timeout=10) == 1
    assert ("Can't recover from AOF write error when the AOF fsync policy is 'always'. "
            "Exiting...") in log.read_text()
    filler.unlink()
    check_aof(small_disk)
    s = start(small_disk, "--appendonly", "yes", "--save", "")
    try:
        for key in acked:
            assert s.client.get(key) == value_of(int(key[1:])), key
    finally:
        s.stop()


@pytest.mark.parametrize("server", SERVERS)
def test_failed_bgsave_refuses_writes_until_a_save_succeeds(small_disk, server):
    """A background save that finds the disk full leaves the previous dump loadable, and with
    stop-writes-on-bgsave-error refuses writes with -MISCONF until a save succeeds again."""
    start = SERVERS[server]
    # Writes are refused only when save points are set (one that never fires here).
    s = start(small_disk, "--save", "3600 1")
    try:
        s.client.set("first", "save")
        s.client.save()
        before = (small_disk / "dump.rdb").read_bytes()
        for n in range(40):
            s.client.set(f"big{n}", os.urandom(64 * 1024))
        filler = leave_free(small_disk, 256 * 1024)
        s.client.bgsave()
        wait_for(lambda: s.client.info("persistence")["rdb_bgsave_in_progress"] == 0)
        assert s.client.info("persistence")["rdb_last_bgsave_status"] == "err"
        with pytest.raises(redis.exceptions.ResponseError) as refused:
            s.client.set("during", "error")
        assert str(refused.value) == MISCONF_RDB
        assert s.client.get("first") == b"save"
        assert (small_disk / "dump.rdb").read_bytes() == before
        filler.unlink()
        s.client.bgsave()
        wait_for(lambda: s.client.info("persistence")["rdb_bgsave_in_progress"] == 0)
        assert s.client.info("persistence")["rdb_last_bgsave_status"] == "ok"
        assert s.client.set("after", "ok")
    finally:
        s.stop(signal.SIGKILL)
