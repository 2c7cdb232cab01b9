"""Sets for membership, with redis-py in RESP2 and RESP3."""
import pytest
import redis


@pytest.mark.parametrize("protocol", [2, 3])
def test_membership(port, protocol):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
    assert r.sadd("online", "robot-1", "robot-2", "robot-2") == 2
    assert r.smembers("online") == {b"robot-1", b"robot-2"}
    assert r.sismember("online", "robot-1") == 1
    assert r.smismember("online", ["robot-1", "robot-9"]) == [1, 0]
    assert r.scard("online") == 2
    assert r.object("encoding", "online") == b"hashtable"
    assert r.sadd("ids", 3, 1, 2) == 3
    assert r.object("encoding", "ids") == b"intset"
    assert r.sinter("ids", "online") == set()
    assert r.sunion("ids", "online") == {b"1", b"2", b"3", b"robot-1", b"robot-2"}
    assert r.sdiffstore("rest", ["ids", "nothing"]) == 3
    assert r.smove("online", "offline", "robot-2") is True
    assert r.smembers("offline") == {b"robot-2"}
    popped = r.spop("ids")
    assert popped in {b"1", b"2", b"3"}
    assert r.scard("ids") == 2
    assert r.srem("online", "robot-1") == 1
    assert r.exists("online") == 0


def test_set_errors(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    r.set("text", "v")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE Operation against a key holding the wrong kind of value$"):
        r.sadd("text", "m")
    with pytest.raises(redis.ResponseError, match="^value is out of range, must be positive$"):
        r.execute_command("SPOP", "s", "-1")
    with pytest.raises(redis.ResponseError, match="^numkeys should be greater than 0$"):
        r.execute_command("SINTERCARD", "0", "s")
    assert r.ping() is True


def test_sort_list_and_set_by_hash_fields(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    r.rpush("ids", 3, 1, 2)
    for i, name in [(1, "c"), (2, "a"), (3, "b")]:
        r.hset(f"user:{i}", mapping={"name": name, "age": 40 - i})
    assert r.sort("ids") == [b"1", b"2", b"3"]
    assert r.sort("ids", desc=True, start=0, num=2) == [b"3", b"2"]
    assert r.sort("ids", by="user:*->name", alpha=True, get=["#", "user:*->name"]) == [b"2", b"a", b"3", b"b", b"1", b"c"]
    assert r.sort("ids", by="user:*->age", store="by_age") == 3
    assert r.lrange("by_age", 0, -1) == [b"3", b"2", b"1"]
    r.sadd("tags", "b", "a", "c")
    assert r.sort("tags", alpha=True) == [b"a", b"b", b"c"]
    with pytest.raises(redis.ResponseError, match="^One or more scores can't be converted into double$"):
        r.sort("tags")
