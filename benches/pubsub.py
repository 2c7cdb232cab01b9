"""End-to-end pub/sub throughput and latency against one server.

Usage: python3 benches/pubsub.py PORT SUBSCRIBERS MESSAGES
Prints "deliveries_per_second p99_latency_us": one publisher pipelines PUBLISH of 64-byte
messages carrying their send time; each subscriber (its own process, raw socket) counts
messages and samples publish-to-receive latency from the timestamps it reads.
"""
import multiprocessing
import re
import socket
import sys
import time

STAMP = re.compile(rb"t=(\d{19})")


def subscriber(port, messages, ready, results):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"SUBSCRIBE bench\r\n")
    buf = b""
    while b":1\r\n" not in buf:
        buf += sock.recv(4096)
    ready.release()
    seen = 0
    latencies = []
    tail = b""
    while seen < messages:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        now = time.time_ns()
        data = tail + chunk
        seen += data.count(b"$7\r\nmessage\r\n") - tail.count(b"$7\r\nmessage\r\n")
        tail = data[-64:]
        stamps = STAMP.findall(chunk)
        if stamps:
            latencies.append((now - int(stamps[-1])) / 1000)
    results.put((seen, time.time_ns(), latencies))


def main():
    port, subscribers, messages = (int(x) for x in sys.argv[1:4])
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Semaphore(0)
    results = ctx.Queue()
    procs = [ctx.Process(target=subscriber, args=(port, messages, ready, results)) for _ in range(subscribers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    pub = socket.create_connection(("127.0.0.1", port))
    batch = 100
    start = time.time_ns()
    for sent in range(0, messages, batch):
        parts = []
        for _ in range(min(batch, messages - sent)):
            payload = b"t=%019d;" % time.time_ns()
            payload += b"x" * (64 - len(payload))
            parts.append(b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$64\r\n" + payload + b"\r\n")
        pub.sendall(b"".join(parts))
        replies = 0
        while replies < len(parts):
            replies += pub.recv(65536).count(b"\r\n")
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    end = max(done for _, done, _ in outcomes)
    assert all(seen == messages for seen, _, _ in outcomes), [seen for seen, _, _ in outcomes]
    latencies = sorted(l for _, _, ls in outcomes for l in ls)
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0
    print(f"{messages * subscribers / ((end - start) / 1e9):.0f} {p99:.0f}")


main()
