"""Lists as work queues, driven by redis-py the way job libraries use them."""
import multiprocessing
import socket
import time

import pytest
import redis

PRODUCERS = 4
ITEMS_PER_PRODUCER = 50_000
WORKERS = 6
STOP = b"stop"


def client(port, **kwargs):
    return redis.Redis(host="127.0.0.1", port=port, **kwargs)


def produce(port, producer):
    r = client(port)
    pipe = r.pipeline(transaction=False)
    for i in range(ITEMS_PER_PRODUCER):
        pipe.rpush("jobs", f"{producer}:{i}")
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()


def take_with_blpop(port, worker, results):
    """Half the workers wait forever, half with a 0.1 s timeout and retry on None."""
    r = client(port)
    timeout = 0 if worker % 2 == 0 else 0.1
    got = []
    while True:
        popped = r.blpop(["jobs"], timeout=timeout)
        if popped is None:
            continue
        key, item = popped
        assert key == b"jobs"
        if item == STOP:
            break
        got.append(item)
    results.put((worker, got))


def take_with_blmove(port, worker, results):
    """The reliable-queue pattern: move into a per-worker processing list, then acknowledge."""
    r = client(port)
    timeout = 0 if worker % 2 == 0 else 0.1
    processing = f"processing:{worker}"
    got = []
    while True:
        item = r.blmove("jobs", processing, timeout, "LEFT", "RIGHT")
        if item is None:
            continue
        assert r.lrem(processing, 1, item) == 1
        if item == STOP:
            break
        got.append(item)
    results.put((worker, got))


def run_queue(port, worker_main):
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    workers = [ctx.Process(target=worker_main, args=(port, w, results)) for w in range(WORKERS)]
    producers = [ctx.Process(target=produce, args=(port, p)) for p in range(PRODUCERS)]
    for p in workers + producers:
        p.start()
    for p in producers:
        p.join(timeout=120)
        assert p.exitcode == 0
    client(port).rpush("jobs", *([STOP] * WORKERS))
    collected = dict(results.get(timeout=120) for _ in workers)
    for p in workers:
        p.join(timeout=30)
        assert p.exitcode == 0
    return collected


def assert_each_item_once_in_producer_order(collected):
    seen = []
    for worker, items in collected.items():
        last = {}
        for item in items:
            producer, number = (int(x) for x in item.split(b":"))
            assert number > last.get(producer, -1), f"worker {worker} got {item} out of order"
            last[producer] = number
        seen.extend(items)
    assert len(seen) == PRODUCERS * ITEMS_PER_PRODUCER
    expected = {f"{p}:{i}".encode() for p in range(PRODUCERS) for i in range(ITEMS_PER_PRODUCER)}
    assert set(seen) == expected


def test_blpop_queue_delivers_every_item_exactly_once(port):
    collected = run_queue(port, take_with_blpop)
    assert_each_item_once_in_producer_order(collected)
    r = client(port)
    assert r.llen("jobs") == 0
    assert r.exists("jobs") == 0


def test_blmove_reliable_queue_delivers_every_item_exactly_once(port):
    collected = run_queue(port, take_with_blmove)
    assert_each_item_once_in_producer_order(collected)
    r = client(port)
    assert r.exists("jobs") == 0
    assert r.keys("processing:*") == []


@pytest.mark.parametrize("protocol", [2, 3])
def test_tutorial_queue(port, protocol):
    r = client(port, protocol=protocol)
    assert r.rpush("queuename", "value123") == 1
    assert r.rpush("queuename", "value456") == 2
    assert r.lpop("queuename") == b"value123"
    assert r.lpop("queuename") == b"value456"
    assert r.lpop("queuename") is None
    # Pushing and popping at the same end is a stack.
    assert r.lpush("stack", "a", "b", "c") == 3
    assert [r.lpop("stack") for _ in range(3)] == [b"c", b"b", b"a"]
    assert r.rpush("stack", "a", "b") == 2
    assert r.rpop("stack") == b"b"
    assert r.lrange("stack", 0, -1) == [b"a"]
    assert r.blpop(["empty"], timeout=0.1) is None
    assert r.lpop("stack", 5) == [b"a"]
    assert r.lpop("stack", 5) is None


def test_blocking_pop_timeout_and_unblock(port):
    r = client(port)
    waiter = client(port)
    ctx = multiprocessing.get_context("fork")

    def blocked(results):
        results.put(client(port).brpop(["nothing"], timeout=0))

    results = ctx.Queue()
    proc = ctx.Process(target=blocked, args=(results,))
    proc.start()
    for _ in range(200):
        if r.info("clients")["blocked_clients"] == 1:
            break
        time.sleep(0.01)
    blocked_id = next(c["id"] for c in r.client_list() if c["cmd"] == "brpop")
    assert waiter.client_unblock(blocked_id) is True
    assert results.get(timeout=10) is None
    proc.join(timeout=10)
    assert r.info("clients")["blocked_clients"] == 0


def test_list_errors(port):
    r = client(port)
    r.set("text", "value")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE Operation against a key holding the wrong kind of value$"):
        r.lpop("text")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        r.blpop(["text"], timeout=0.1)
    with pytest.raises(redis.ResponseError, match="^value is out of range, must be positive$"):
        r.execute_command("LPOP", "list", "-1")
    with pytest.raises(redis.ResponseError, match="^value is out of range, must be positive$"):
        r.execute_command("LPOP", "list", "abc")
    with pytest.raises(redis.ResponseError, match="^timeout is negative$"):
        r.execute_command("BLPOP", "list", "-1")
    with pytest.raises(redis.ResponseError, match="^timeout is not a float or out of range$"):
        r.execute_command("BLPOP", "list", "soon")
    with pytest.raises(redis.ResponseError, match="^count should be greater than 0$"):
        r.execute_command("LMPOP", "1", "list", "LEFT", "COUNT", "0")
    with pytest.raises(redis.ResponseError, match="^numkeys should be greater than 0$"):
        r.execute_command("BLMPOP", "0", "0", "list", "LEFT")
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'lpush' command$"):
        r.execute_command("LPUSH", "list")
    assert r.ping() is True


def test_blocking_timeout_nulls_per_protocol(port):
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(b"BLPOP nothing 0.01\r\n")
    assert raw.recv(64) == b"*-1\r\n"
    raw.sendall(b"HELLO 3\r\n")
    assert raw.recv(4096).startswith(b"%7\r\n")
    raw.sendall(b"BLPOP nothing 0.01\r\n")
    assert raw.recv(64) == b"_\r\n"
    raw.sendall(b"MULTI\r\nBLPOP nothing 0\r\nBLMOVE nothing dst LEFT LEFT 0\r\nEXEC\r\n")
    expected = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n_\r\n_\r\n"
    got = b""
    while len(got) < len(expected):
        got += raw.recv(4096)
    assert got == expected
    raw.close()
