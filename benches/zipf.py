"""A cache's hit ratio: GETs of keys drawn from a Zipf distribution (exponent 1.0), each miss
followed by a SET of the key, as a read-through cache does.

Usage: python3 benches/zipf.py PORT KEYS REQUESTS
Keys are drawn from KEYS distinct ones with a fixed seed, so every server sees the same
sequence. GETs go out in pipelined batches of 100, then the batch's misses are SET. Prints
"hit_ratio keys_held" over the second half of the requests (the first half fills the cache).
Raw RESP over sockets, so it needs nothing beyond Python.
"""
import bisect
import itertools
import random
import socket
import sys

from resp import command, run

BATCH = 100
VALUE = b"x" * 100
HIT = b"$%d\r\n%s\r\n" % (len(VALUE), VALUE)
MISS = b"$-1\r\n"


def zipf_draws(keys, count, seed=12345):
    cumulative = list(itertools.accumulate(1.0 / rank for rank in range(1, keys + 1)))
    total = cumulative[-1]
    rng = random.Random(seed)
    # Ranks are spread over the key names, so popularity does not follow insertion order.
    names = list(range(keys))
    rng.shuffle(names)
    for _ in range(count):
        yield names[bisect.bisect_left(cumulative, rng.random() * total)]


def read_gets(sock, count):
    """The batch's GET replies, as a list of hits (True) and misses (False)."""
    data = b""
    hits = []
    at = 0
    while len(hits) < count:
        if data.startswith(HIT, at):
            hits.append(True)
            at += len(HIT)
        elif data.startswith(MISS, at):
            hits.append(False)
            at += len(MISS)
        else:
            data += sock.recv(1 << 20)
    return hits


def main():
    port, keys, requests = (int(a) for a in sys.argv[1:4])
    sock = socket.create_connection(("127.0.0.1", port))
    draws = zipf_draws(keys, requests)
    hits = lookups = 0
    for done in range(0, requests, BATCH):
        batch = [b"key:%d" % k for k in itertools.islice(draws, BATCH)]
        sock.sendall(b"".join(command("GET", k) for k in batch))
        found = read_gets(sock, len(batch))
        misses = [command("SET", k, VALUE) for k, hit in zip(batch, found) if not hit]
        if misses:
            run(sock, misses)
        if done >= requests // 2:
            hits += sum(found)
            lookups += len(found)
    sock.sendall(command("DBSIZE"))
    held = int(sock.recv(100).split(b"\r\n")[0][1:])
    print(f"{hits / lookups:.4f} {held}")


if __name__ == "__main__":
    main()
