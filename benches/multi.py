"""MULTI, 3 x INCR, EXEC transactions against one server.

Usage: python3 benches/multi.py PORT TRANSACTIONS
Prints "transactions_per_second 0": 4 processes, each pipelining 100 transactions per write
on one connection, so the server (not the client) does the work being measured.
"""
import multiprocessing
import socket
import sys
import time

TX = b"*1\r\n$5\r\nMULTI\r\n" + b"*2\r\n$4\r\nINCR\r\n$3\r\nctr\r\n" * 3 + b"*1\r\n$4\r\nEXEC\r\n"
# +OK, three +QUEUED, then *3 and three integers: every reply line ends in \r\n.
LINES_PER_TX = 1 + 3 + 1 + 3


def worker(port, count):
    sock = socket.create_connection(("127.0.0.1", port))
    batch = 100
    for done in range(0, count, batch):
        n = min(batch, count - done)
        sock.sendall(TX * n)
        lines = 0
        while lines < n * LINES_PER_TX:
            lines += sock.recv(1 << 20).count(b"\r\n")


def main():
    port, total = int(sys.argv[1]), int(sys.argv[2])
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=worker, args=(port, total // 4)) for _ in range(4)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print(f"{(total // 4 * 4) / (time.perf_counter() - start):.0f} 0")


main()
