"""Pub/sub with redis-py, the way sensor and dashboard processes use it."""
import multiprocessing
import socket
import subprocess
import sys
import time

import pytest
import redis

PUBLISHER = """
import json, redis, sys
r = redis.Redis(host='127.0.0.1', port=int(sys.argv[1]))
r.publish('my_channel', json.dumps({'a': 123, 'b': 321}))
r.publish('my_channel', 'hello world!')
"""


def client(port, **kwargs):
    return redis.Redis(host="127.0.0.1", port=port, **kwargs)


def messages(pubsub, count, timeout=10):
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message is not None:
            got.append(message)
    return got


@pytest.mark.parametrize("protocol", [2, 3])
def test_tutorial_subscriber(port, protocol):
    r = client(port, protocol=protocol)
    p = r.pubsub()
    p.subscribe("my_channel")
    assert messages(p, 1) == [{"type": "subscribe", "pattern": None, "channel": b"my_channel", "data": 1}]
    subprocess.run([sys.executable, "-c", PUBLISHER, str(port)], check=True)
    assert messages(p, 2) == [
        {"type": "message", "pattern": None, "channel": b"my_channel", "data": b'{"a": 123, "b": 321}'},
        {"type": "message", "pattern": None, "channel": b"my_channel", "data": b"hello world!"},
    ]
    assert p.get_message(timeout=0.1) is None


@pytest.mark.parametrize("protocol", [2, 3])
def test_tutorial_pattern_subscriber(port, protocol):
    r = client(port, protocol=protocol)
    p = r.pubsub()
    p.psubscribe("my_*")
    assert messages(p, 1) == [{"type": "psubscribe", "pattern": None, "channel": b"my_*", "data": 1}]
    subprocess.run([sys.executable, "-c", PUBLISHER, str(port)], check=True)
    assert messages(p, 2) == [
        {"type": "pmessage", "pattern": b"my_*", "channel": b"my_channel", "data": b'{"a": 123, "b": 321}'},
        {"type": "pmessage", "pattern": b"my_*", "channel": b"my_channel", "data": b"hello world!"},
    ]


def read_exactly(sock, size):
    got = b""
    while len(got) < size:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {got!r}"
        got += chunk
    return got


def test_resp3_subscriber_gets_push_frames_and_runs_commands(port):
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(b"HELLO 3\r\n")
    assert raw.recv(4096).startswith(b"%7\r\n")
    raw.sendall(b"SUBSCRIBE news\r\n")
    confirmation = b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    assert read_exactly(raw, len(confirmation)) == confirmation
    assert client(port).publish("news", "one") == 1
    raw.sendall(b"SET k v\r\nGET k\r\n")
    expected = b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$3\r\none\r\n+OK\r\n$1\r\nv\r\n"
    assert read_exactly(raw, len(expected)) == expected
    raw.close()


FANOUT_SUBSCRIBERS = 20
FANOUT_MESSAGES = 100_000


def fanout_subscriber(port, ready, results):
    p = client(port).pubsub(ignore_subscribe_messages=True)
    p.subscribe("fanout")
    while p.get_message(timeout=1) is None and not p.subscribed:
        pass
    ready.release()
    expected = 0
    in_order = True
    deadline = time.time() + 120
    while expected < FANOUT_MESSAGES and time.time() < deadline:
        message = p.get_message(timeout=1)
        if message is None:
            continue
        in_order &= message["data"] == str(expected).encode()
        expected += 1
    results.put((expected, in_order))


def test_fanout_every_subscriber_gets_every_message_in_order(port):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Semaphore(0)
    results = ctx.Queue()
    procs = [ctx.Process(target=fanout_subscriber, args=(port, ready, results)) for _ in range(FANOUT_SUBSCRIBERS)]
    for p in procs:
        p.start()
    for _ in procs:
        assert ready.acquire(timeout=30)
    r = client(port)
    assert r.pubsub_numsub("fanout") == [(b"fanout", FANOUT_SUBSCRIBERS)]
    pipe = r.pipeline(transaction=False)
    for i in range(FANOUT_MESSAGES):
        pipe.publish("fanout", i)
        if i % 1000 == 999:
            assert pipe.execute() == [FANOUT_SUBSCRIBERS] * 1000
    outcomes = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert outcomes == [(FANOUT_MESSAGES, True)] * FANOUT_SUBSCRIBERS


def test_slow_subscriber_is_disconnected_and_memory_stays_bounded(port):
    r = client(port)
    # A subscriber that never reads, with small socket buffers so the server sees it stall.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", port))
    slow.sendall(b"SUBSCRIBE sensor\r\n")
    fast = r.pubsub()
    fast.subscribe("sensor")
    assert fast.get_message(timeout=None)["type"] == "subscribe"
    while r.pubsub_numsub("sensor") != [(b"sensor", 2)]:
        time.sleep(0.01)
    payload = b"x" * 65536
    count = 200 * 1024 * 1024 // len(payload)
    publisher = client(port)
    peak = 0
    for i in range(count):
        # Two receivers until the slow one is disconnected, one after.
        assert publisher.publish("sensor", payload) in (1, 2)
        # The fast subscriber reads each message as it comes, with a blocking read.
        message = fast.get_message(timeout=None)
        assert (message["type"], message["data"]) == ("message", payload), i
        if i % 200 == 0:
            peak = max(peak, r.info("memory")["used_memory"])
    assert peak < 80 * 1024 * 1024, f"server memory peaked at {peak} bytes"
    assert r.info("stats")["client_output_buffer_limit_disconnections"] == 1
    assert r.pubsub_numsub("sensor") == [(b"sensor", 1)]
    slow.close()


def test_pubsub_errors(port):
    r = client(port)
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'subscribe' command$"):
        r.execute_command("SUBSCRIBE")
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'publish' command$"):
        r.execute_command("PUBLISH", "only-channel")
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(b"SUBSCRIBE c\r\nGET k\r\nPING\r\n")
    expected = (b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
                b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
                b"are allowed in this context\r\n"
                b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    assert read_exactly(raw, len(expected)) == expected
    raw.close()
    assert r.ping() is True
