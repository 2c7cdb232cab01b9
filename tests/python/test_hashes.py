"""Hashes as per-device state, with redis-py in RESP2 and RESP3."""
import pytest
import redis


@pytest.mark.parametrize("protocol", [2, 3])
def test_device_state_hash(port, protocol):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
    assert r.hset("sensor:17", mapping={"temperature": 25, "humidity": 0.5}) == 2
    assert r.hset("sensor:17", "temperature", 26) == 0
    assert r.hgetall("sensor:17") == {b"temperature": b"26", b"humidity": b"0.5"}
    assert r.hget("sensor:17", "temperature") == b"26"
    assert r.hmget("sensor:17", ["humidity", "missing"]) == [b"0.5", None]
    assert r.hincrby("sensor:17", "temperature", -3) == 23
    assert r.hincrbyfloat("sensor:17", "humidity", 0.25) == 0.75
    assert r.hlen("sensor:17") == 2
    assert r.hexists("sensor:17", "humidity") is True
    assert sorted(r.hkeys("sensor:17")) == [b"humidity", b"temperature"]
    assert r.hsetnx("sensor:17", "humidity", 1) == 0
    assert r.object("encoding", "sensor:17") == b"listpack"
    assert r.hdel("sensor:17", "temperature", "humidity", "missing") == 2
    assert r.exists("sensor:17") == 0
    assert r.hgetall("sensor:17") == {}


def test_big_hash_becomes_hashtable_and_scans(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    r.hset("big", mapping={f"f{i}": i for i in range(600)})
    assert r.object("encoding", "big") == b"hashtable"
    assert dict(r.hscan_iter("big", match="f1*")) == {f"f{i}".encode(): str(i).encode() for i in range(600) if str(i).startswith("1")}


def test_hash_errors(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    r.set("text", "v")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE Operation against a key holding the wrong kind of value$"):
        r.hset("text", "f", "v")
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'hset' command$"):
        r.execute_command("HSET", "h", "f1", "v1", "f2")
    r.hset("h", "name", "robot")
    with pytest.raises(redis.ResponseError, match="^hash value is not an integer$"):
        r.hincrby("h", "name", 1)
    with pytest.raises(redis.ResponseError, match="^value is not a valid float$"):
        r.hincrbyfloat("h", "n", "abc")
    assert r.ping() is True
