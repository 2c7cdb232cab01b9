"""MULTI/EXEC/WATCH atomicity with real clients in separate processes."""
import multiprocessing

import pytest
import redis


def client(port):
    return redis.Redis(host="127.0.0.1", port=port)


def optimistic_increments(port, count):
    r = client(port)
    done = 0
    while done < count:
        with r.pipeline() as pipe:
            try:
                pipe.watch("counter")
                value = int(pipe.get("counter") or 0)
                pipe.multi()
                pipe.set("counter", value + 1)
                pipe.execute()
                done += 1
            except redis.WatchError:
                continue


def test_watch_multi_exec_increments_are_never_lost(port):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=optimistic_increments, args=(port, 2000)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert client(port).get("counter") == b"16000"


def mset_writer(port, writer, rounds):
    r = client(port)
    for i in range(rounds):
        value = f"{writer}:{i}"
        r.mset({"a": value, "b": value, "c": value})


def mget_reader(port, reads, results):
    r = client(port)
    torn = 0
    for _ in range(reads):
        values = r.mget("a", "b", "c")
        if len(set(values)) != 1:
            torn += 1
    results.put(torn)


def test_mset_is_atomic_for_mget_readers(port):
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    client(port).mset({"a": "init", "b": "init", "c": "init"})
    writers = [ctx.Process(target=mset_writer, args=(port, w, 25_000)) for w in range(4)]
    readers = [ctx.Process(target=mget_reader, args=(port, 25_000, results)) for _ in range(4)]
    for p in writers + readers:
        p.start()
    torn = [results.get(timeout=120) for _ in readers]
    for p in writers + readers:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert torn == [0, 0, 0, 0]


def poll_counter(port, stop, results):
    r = client(port)
    seen = set()
    while not stop.is_set():
        seen.add(r.get("k"))
    results.put(seen)


def test_exec_block_is_seen_whole_or_not_at_all(port):
    r = client(port)
    r.set("k", 0)
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    results = ctx.Queue()
    readers = [ctx.Process(target=poll_counter, args=(port, stop, results)) for _ in range(2)]
    for p in readers:
        p.start()
    for _ in range(3):
        with r.pipeline(transaction=True) as pipe:
            for _ in range(10_000):
                pipe.incr("k")
            replies = pipe.execute()
        assert replies[-1] == replies[0] + 9_999
    stop.set()
    seen = set().union(*(results.get(timeout=60) for _ in readers))
    for p in readers:
        p.join(timeout=30)
    assert seen <= {b"0", b"10000", b"20000", b"30000"}
    assert r.get("k") == b"30000"


def test_transaction_errors(port):
    r = client(port)
    with pytest.raises(redis.ResponseError, match="^EXEC without MULTI$"):
        r.execute_command("EXEC")
    with pytest.raises(redis.ResponseError, match="^DISCARD without MULTI$"):
        r.execute_command("DISCARD")
    conn = r.connection_pool.get_connection()
    conn.send_command("MULTI")
    assert conn.read_response() == b"OK"
    conn.send_command("WATCH", "k")
    with pytest.raises(redis.ResponseError, match="^WATCH inside MULTI is not allowed$"):
        conn.read_response()
    conn.send_command("MULTI")
    with pytest.raises(redis.ResponseError, match="^MULTI calls can not be nested$"):
        conn.read_response()
    conn.send_command("SET", "k", "v")
    assert conn.read_response() == b"QUEUED"
    conn.send_command("NOSUCHCOMMAND", "x")
    with pytest.raises(redis.ResponseError, match="^unknown command 'NOSUCHCOMMAND', with args beginning with: 'x' $"):
        conn.read_response()
    conn.send_command("EXEC")
    with pytest.raises(redis.exceptions.ExecAbortError, match="^Transaction discarded because of previous errors.$"):
        conn.read_response()
    r.connection_pool.release(conn)
    assert r.exists("k") == 0
    # Runtime errors inside EXEC are returned in place; the other commands still run.
    r.set("text", "v")
    with r.pipeline(transaction=True) as pipe:
        pipe.incr("text").set("k", "1").lpush("text", "x")
        replies = pipe.execute(raise_on_error=False)
    assert str(replies[0]) == "value is not an integer or out of range"
    assert replies[1] is True
    assert str(replies[2]) == "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert r.get("k") == b"1"
