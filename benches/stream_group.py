"""XREADGROUP + XACK pairs against one server: a work queue read through consumer groups.

Usage: python3 benches/stream_group.py setup PORT ENTRIES
       python3 benches/stream_group.py run PORT PAIRS PIPELINE
`setup` fills stream `xq` with ENTRIES entries of 3 small fields, IDs 1-0, 2-0 ..., and makes
groups g0..g3 at its start (outside the measurement). `run` starts 4 processes, each reading
through its own group, one entry at a time, and acknowledging it: the entry a group reads next is
known in advance, so each process pipelines PIPELINE pairs per write. Prints "pairs_per_second 0".
Raw RESP over sockets, so it needs nothing beyond Python.
"""
import multiprocessing
import socket
import sys
import time

from resp import command, run

PROCESSES = 4


def read_acks(sock, count):
    """Reads the replies of `count` pairs: each ends with its XACK's `:1`."""
    data = b""
    while data.count(b":1\r\n") < count:
        data += sock.recv(1 << 20)
    return data


def setup(port, entries):
    sock = socket.create_connection(("127.0.0.1", port))
    run(sock, [command("DEL", "xq")])
    for start in range(1, entries + 1, 1000):
        run(sock, [command("XADD", "xq", f"{i}-0", "temp", "25", "hum", "40", "robot", "r7")
                   for i in range(start, min(start + 1000, entries + 1))])
    run(sock, [command("XGROUP", "CREATE", "xq", f"g{n}", "0") for n in range(PROCESSES)])


def worker(port, group, pairs, pipeline):
    sock = socket.create_connection(("127.0.0.1", port))
    read = command("XREADGROUP", "GROUP", group, "c", "COUNT", "1", "STREAMS", "xq", ">")
    for done in range(0, pairs, pipeline):
        n = min(pipeline, pairs - done)
        batch = b"".join(read + command("XACK", "xq", group, f"{done + i + 1}-0") for i in range(n))
        sock.sendall(batch)
        got = read_acks(sock, n)
        assert got.count(b":1\r\n") == n, got[-200:]


def measure(port, pairs, pipeline):
    ctx = multiprocessing.get_context("fork")
    each = pairs // PROCESSES
    procs = [ctx.Process(target=worker, args=(port, f"g{n}", each, pipeline))
             for n in range(PROCESSES)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print(f"{each * PROCESSES / (time.perf_counter() - start):.0f} 0")


if sys.argv[1] == "setup":
    setup(int(sys.argv[2]), int(sys.argv[3]))
else:
    measure(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
