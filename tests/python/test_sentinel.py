"""Failover by a real Redis Sentinel (Debian's 7.0.15, as `redis-server --sentinel`): three
Sentinels watch an Oxidis master with two Oxidis replicas. A writer confirms each write on a
replica with WAIT; the master is SIGKILLed; Sentinel promotes a replica and points the other
at it, redis-py's Sentinel client follows, and no write that WAIT confirmed is lost."""
import signal
import threading
import time

import redis
import redis.sentinel

from conftest import free_port
from test_persistence import REDIS_SERVER, oxidis

DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class Sentinel:
    def __init__(self, workdir, master_port):
        import subprocess
        self.port = free_port()
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds mymaster {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout mymaster {FAILOVER_TIMEOUT_MS}\n"
            "sentinel parallel-syncs mymaster 1\n")
        self.proc = subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, decode_responses=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def wait_for(predicate, timeout, message):
    deadline = time.time() + timeout
    while True:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        assert time.time() < deadline, f"timed out waiting for {message}"
        time.sleep(0.1)


def test_sentinel_fails_over_oxidis_and_loses_no_confirmed_write(tmp_path):
    for name in ("m", "r1", "r2", "s1", "s2", "s3"):
        (tmp_path / name).mkdir()
    args = ("--save", "", "--repl-diskless-sync-delay", "0")
    master = oxidis(tmp_path / "m", *args)
    replicas = [oxidis(tmp_path / name, *args, "--replicaof", "127.0.0.1", str(master.port))
                for name in ("r1", "r2")]
    sentinels = [Sentinel(tmp_path / name, master.port) for name in ("s1", "s2", "s3")]
    stop = threading.Event()
    confirmed = []
    try:
        def watched():
            state = sentinels[0].client.sentinel_master("mymaster")
            return state["num-slaves"] == 2 and state["num-other-sentinels"] == 2
        wait_for(watched, 30, "the Sentinels to find the replicas and each other")

        client = redis.sentinel.Sentinel([("127.0.0.1", s.port) for s in sentinels], socket_timeout=1)
        writer_master = client.master_for("mymaster", socket_timeout=1)

        def write():
            i = 0
            while not stop.is_set():
                try:
                    writer_master.set(f"k{i}", i)
                    if writer_master.wait(1, 1000) >= 1:
                        confirmed.append(i)
                    i += 1
                except redis.RedisError:
                    time.sleep(0.1)

        writer = threading.Thread(target=write)
        writer.start()
        wait_for(lambda: len(confirmed) >= 200, 30, "confirmed writes")
        master.proc.send_signal(signal.SIGKILL)
        master.proc.wait()
        killed_at = time.time()

        def promoted():
            host, port = sentinels[0].client.sentinel_get_master_addr_by_name("mymaster")
            return int(port) != master.port
        wait_for(promoted, 30, "a replica to be promoted")
        elapsed = time.time() - killed_at
        assert elapsed < (DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS) / 1000 + 10, elapsed
        new_port = int(sentinels[0].client.sentinel_get_master_addr_by_name("mymaster")[1])
        new_master = next(r for r in replicas if r.port == new_port)
        other = next(r for r in replicas if r.port != new_port)
        assert new_master.client.info("replication")["role"] == "master"

        # The writer reaches the new master through Sentinel and its writes are confirmed.
        count = len(confirmed)
        wait_for(lambda: len(confirmed) >= count + 100, 30, "writes confirmed by the new master's replica")
        stop.set()
        writer.join(timeout=10)

        def follows():
            i = other.client.info("replication")
            return i["master_port"] == new_port and i["master_link_status"] == "up"
        wait_for(follows, 30, "the other replica to follow the new master")
        values = new_master.client.mget([f"k{i}" for i in confirmed])
        lost = [i for i, v in zip(confirmed, values) if v != str(i).encode()]
        assert lost == []
        assert new_master.client.wait(1, 5000) == 1
        assert other.client.dbsize() == new_master.client.dbsize()
    finally:
        stop.set()
        for s in sentinels:
            s.stop()
        for r in replicas:
            r.stop()
        if master.proc.poll() is None:
            master.stop()
