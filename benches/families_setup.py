"""Fills a server with the data the bitmap, HyperLogLog and geo rows read, outside the
measurement: two 1 MB bitmaps, three dense HLLs, 100,000 points around Berlin, and a stream of
1,000 entries of 3 fields.

Usage: python3 benches/families_setup.py PORT
Raw RESP over a socket, so it needs nothing beyond Python."""
import random
import socket
import sys

from resp import command, run


def main():
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    rng = random.Random(7)
    run(sock, [command("DEL", "bm1", "bm2", "hll1", "hll2", "hll3", "pts", "xs", "xa", "xm")])
    run(sock, [command("SET", "bm1", rng.randbytes(1 << 20)), command("SET", "bm2", rng.randbytes(1 << 20))])
    for key in ("hll1", "hll2", "hll3"):
        run(sock, [command("PFADD", key, *(f"{key}:{i}" for i in range(start, start + 1000)))
                   for start in range(0, 100_000, 1000)])
    points = []
    for i in range(100_000):
        points += [f"{13.4 + rng.uniform(-0.7, 0.7):.6f}", f"{52.5 + rng.uniform(-0.45, 0.45):.6f}", f"p{i}"]
    run(sock, [command("GEOADD", "pts", *points[i:i + 3000]) for i in range(0, len(points), 3000)])
    run(sock, [command("XADD", "xs", "*", "temp", i % 40, "hum", 40, "robot", f"r{i % 9}")
               for i in range(1000)])


main()
