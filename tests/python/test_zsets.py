"""Sorted sets as leaderboards and delayed-job schedules, with redis-py."""
import math
import multiprocessing

import pytest
import redis

from side_by_side import Pair

JOBS = 100_000
WORKERS = 4


def client(port, **kwargs):
    return redis.Redis(host="127.0.0.1", port=port, **kwargs)


def claim_due_jobs(port, now, results):
    """A job library's worker: read due jobs, claim each by ZREM; only a 1 means it is ours."""
    r = client(port)
    claimed = []
    while True:
        due = r.zrangebyscore("jobs", "-inf", now, start=0, num=10)
        if not due:
            break
        for job in due:
            if r.zrem("jobs", job) == 1:
                claimed.append(job)
    results.put(claimed)


def test_delayed_jobs_are_each_claimed_once(port):
    r = client(port)
    pipe = r.pipeline(transaction=False)
    for i in range(JOBS):
        # Half the jobs are due (score <= 1000), half are in the future.
        pipe.zadd("jobs", {f"job:{i}": i % 2000})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    assert r.zcard("jobs") == JOBS
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=claim_due_jobs, args=(port, 1000, results)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    claimed = [job for _ in procs for job in results.get(timeout=120)]
    for p in procs:
        p.join(timeout=30)
    due = {f"job:{i}".encode() for i in range(JOBS) if i % 2000 <= 1000}
    assert len(claimed) == len(due)
    assert set(claimed) == due
    assert r.zcard("jobs") == JOBS - len(due)
    assert r.zrangebyscore("jobs", "-inf", 1000) == []


@pytest.mark.parametrize("protocol", [2, 3])
def test_leaderboard(port, protocol):
    r = client(port, protocol=protocol)
    assert r.zadd("board", {"ann": 10, "bob": 25.5, "cid": 7}) == 3
    assert r.zincrby("board", 2, "cid") == 9.0
    ranked = r.zrange("board", 0, -1, desc=True, withscores=True)
    assert [tuple(entry) for entry in ranked] == [(b"bob", 25.5), (b"ann", 10.0), (b"cid", 9.0)]
    assert r.zrank("board", "ann") == 1
    assert r.zrevrank("board", "ann") == 1
    assert r.zscore("board", "bob") == 25.5
    assert r.zcount("board", "(9", "+inf") == 2
    assert [tuple(entry) for entry in r.zpopmin("board", 1)] == [(b"cid", 9.0)]
    assert r.zadd("board", {"ann": 5}, gt=True, ch=True) == 0
    assert r.zscore("board", "ann") == 10.0
    assert r.object("encoding", "board") == b"listpack"
    assert r.zscore("board", "missing") is None


def test_zset_errors(port):
    r = client(port)
    with pytest.raises(redis.ResponseError, match="^value is not a valid float$"):
        r.execute_command("ZADD", "z", "abc", "m")
    with pytest.raises(redis.ResponseError, match="^XX and NX options at the same time are not compatible$"):
        r.execute_command("ZADD", "z", "NX", "XX", "1", "m")
    with pytest.raises(redis.ResponseError, match="^GT, LT, and/or NX options at the same time are not compatible$"):
        r.execute_command("ZADD", "z", "NX", "GT", "1", "m")
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        r.execute_command("ZADD", "z", "1", "m", "2")
    with pytest.raises(redis.ResponseError, match="^min or max is not a float$"):
        r.execute_command("ZRANGEBYSCORE", "z", "low", "10")
    r.set("text", "v")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE Operation against a key holding the wrong kind of value$"):
        r.zadd("text", {"m": 1})
    assert r.ping() is True


def signs(pair, key, member):
    """The sign bit of a member's score on both servers (-0.0 == 0.0 for Python)."""
    return [math.copysign(1, s.client.zscore(key, member)) for s in (pair.ox, pair.rs)]


def test_signed_zero_and_infinite_scores_as_redis_stores_them(tmp_path):
    """A listpack keeps a whole-number score as an integer, so -0 becomes 0 there but not in
    a skiplist; inf times weight 0 is NaN, which ZUNIONSTORE/ZINTERSTORE store as 0."""
    pair = Pair(tmp_path)
    try:
        pair.same("ZADD", "small", "-0.0", "m")
        assert signs(pair, "small", "m") == [1, 1]
        pair.same("ZADD", "small", "0.0", "m")
        pair.same("ZINCRBY", "small", "-0.0", "m")
        assert signs(pair, "small", "m") == [1, 1]
        pair.same("ZADD", "big", *[x for i in range(200) for x in (i, f"m{i}")])
        pair.same("ZADD", "big", "-0.0", "neg")
        assert pair.same("OBJECT", "ENCODING", "big") == b"skiplist"
        assert signs(pair, "big", "neg") == [-1, -1]
        pair.same("ZADD", "long", "-0.0", "x" * 100)
        assert signs(pair, "long", "x" * 100) == [-1, -1]
        pair.same("ZADD", "inf", "inf", "a", "-inf", "b")
        pair.same("ZADD", "one", "1", "a", "1", "b")
        for op in ("ZUNIONSTORE", "ZINTERSTORE"):
            pair.same(op, "out", "1", "inf", "WEIGHTS", "0")
            assert pair.same("ZRANGE", "out", "0", "-1", "WITHSCORES") == [[b"a", 0.0], [b"b", 0.0]]
            pair.same(op, "out", "2", "inf", "one", "WEIGHTS", "0", "1")
            assert pair.same("ZRANGE", "out", "0", "-1", "WITHSCORES") == [[b"a", 1.0], [b"b", 1.0]]
        # A SETBIT that leaves the bit as it was is no write: a WATCHing transaction goes on.
        pair.same("SETBIT", "bits", "3", "1")
        for server in (pair.ox, pair.rs):
            with server.client.pipeline() as p:
                p.watch("bits")
                assert redis.Redis(port=server.port).setbit("bits", 3, 1) == 1
                p.multi()
                p.set("after", "1")
                assert p.execute() == [True]
    finally:
        pair.stop()
