"""Fuzzer output on the wire, for a long time: connections send RESP-like garbage (pieces of
valid requests, real command names with random arguments, random bytes) to a running oxidis
while a well-behaved client checks exact answers. Fails if the well-behaved client ever gets a
wrong answer or no answer, if the server dies, or if its memory grows without bound.

Not part of the test suite (it runs for minutes): python3 tests/soak/wire_fuzz.py [seconds]
Prints the number of garbage requests sent and the server's RSS at the start and the end.
"""
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, "target", "release", "oxidis")
NAMES = [b"SET", b"GET", b"DEL", b"LPUSH", b"RPOP", b"BLPOP", b"HSET", b"HGETALL", b"ZADD",
         b"ZRANGE", b"SADD", b"SPOP", b"EXPIRE", b"MULTI", b"EXEC", b"SUBSCRIBE", b"PUBLISH",
         b"CLIENT", b"CONFIG", b"OBJECT", b"SCAN", b"SORT", b"INCRBYFLOAT", b"GETRANGE",
         b"SETRANGE", b"LRANGE", b"HRANDFIELD", b"ZRANDMEMBER", b"ACL", b"AUTH", b"HELLO",
         b"RESET", b"DUMP", b"RESTORE", b"COPY", b"WATCH", b"LPOS", b"LMPOP", b"ZUNIONSTORE"]
PIECES = [b"*", b"$", b"\r\n", b"\r", b"\n", b"-1", b"0", b"1", b"3", b"2147483648",
          b"4294967296", b"536870912", b" ", b"\"", b"'", b"\\x0", b"\x00", b"k", b"-inf"]


def garbage(rng):
    kind = rng.random()
    if kind < 0.5:
        args = [rng.choice(NAMES)] + [rng.choice([b"k", b"k2", b"0", b"-1", b"1e400", b"NX",
                                                  b"COUNT", b"*", b"", rng.randbytes(rng.randrange(8))])
                                      for _ in range(rng.randrange(6))]
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    if kind < 0.8:
        return b"".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 30)))
    return rng.randbytes(rng.randrange(1, 256))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def attacker(port, seed, stop, sent):
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(0.05)
                for _ in range(rng.randrange(1, 200)):
                    s.sendall(garbage(rng))
                    sent[seed] += 1
                    try:
                        s.recv(65536)
                    except OSError:
                        pass
        except OSError:
            pass


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp()
    server = subprocess.Popen([BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--dir", workdir, "--maxmemory", "512mb"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        good = redis.Redis(port=port, socket_timeout=5)
        for _ in range(100):
            try:
                good.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        start_rss = rss_kb(server.pid)
        stop = threading.Event()
        sent = {seed: 0 for seed in range(4)}
        threads = [threading.Thread(target=attacker, args=(port, seed, stop, sent)) for seed in sent]
        for t in threads:
            t.start()
        deadline = time.time() + seconds
        checks = 0
        peak = start_rss
        while time.time() < deadline:
            value = os.urandom(8).hex()
            assert good.set("good:key", value) is True
            assert good.get("good:key") == value.encode()
            assert server.poll() is None, "server died"
            peak = max(peak, rss_kb(server.pid))
            checks += 1
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()
        end_rss = rss_kb(server.pid)
        print(f"{seconds:.0f} s: {sum(sent.values())} garbage requests, {checks} checked "
              f"round trips, RSS {start_rss} kB at start, {peak} kB peak, {end_rss} kB at end")
        assert peak < 600 * 1024, "memory grew past maxmemory and buffers"
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
