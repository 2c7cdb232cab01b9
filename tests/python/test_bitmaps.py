"""Bitmaps through redis-py: a fleet's device-presence bitmaps, the same commands answered alike
by oxidis and redis-server 7.0.15, and bad offsets and types refused with Redis's errors."""
import random

import pytest
import redis

from side_by_side import Pair

DEVICES = 1_000_000


def client(port):
    return redis.Redis(host="127.0.0.1", port=port)


def presence(seed, share):
    """Which of the fleet's devices were online on a day, as the bitmap's bytes."""
    rng = random.Random(seed)
    online = bytearray(DEVICES // 8)
    for device in rng.sample(range(DEVICES), int(DEVICES * share)):
        online[device >> 3] |= 0x80 >> (device & 7)
    return bytes(online)


def ones(data, first_bit, last_bit):
    """Set bits of `data` from `first_bit` to `last_bit`, both included."""
    first_byte, last_byte = first_bit >> 3, last_bit >> 3
    chunk = int.from_bytes(data[first_byte:last_byte + 1], "big") >> (7 - (last_bit & 7))
    return bin(chunk & ((1 << (last_bit - first_bit + 1)) - 1)).count("1")


def test_device_presence_per_day(port):
    r = client(port)
    monday, tuesday = presence(1, 0.3), presence(2, 0.5)
    r.set("online:mon", monday)
    r.set("online:tue", tuesday)
    # Devices reporting in one by one, as a gateway does with SETBIT.
    for device in (0, 7, 999_999, 123_457):
        r.setbit("online:tue", device, 1)
    tuesday = r.get("online:tue")
    assert r.bitcount("online:mon") == bin(int.from_bytes(monday, "big")).count("1")
    # Per range: bytes and bits, negative ends, a range inside one byte.
    for start, end in [(0, 999), (1000, 124_999), (-500, -1), (40_000, 40_000)]:
        first, last = (start % len(tuesday)) * 8, (end % len(tuesday)) * 8 + 7
        assert r.bitcount("online:tue", start, end) == ones(tuesday, first, last)
    for start, end in [(3, 77_777), (999_990, 999_999), (5, 5)]:
        assert r.bitcount("online:tue", start, end, "BIT") == ones(tuesday, start, end)
    # Across days: online both days, either day, and never.
    assert r.bitop("AND", "online:both", "online:mon", "online:tue") == DEVICES // 8
    assert r.get("online:both") == bytes(a & b for a, b in zip(monday, tuesday))
    assert r.bitop("OR", "online:any", "online:mon", "online:tue") == DEVICES // 8
    assert r.get("online:any") == bytes(a | b for a, b in zip(monday, tuesday))
    r.bitop("NOT", "online:never", "online:any")
    assert r.bitcount("online:never") == DEVICES - r.bitcount("online:any")
    # The first device that never came online, and the first online after device 500,000.
    never = r.get("online:never")
    assert r.bitpos("online:never", 1) == next(i for i in range(DEVICES) if ones(never, i, i))
    assert r.bitpos("online:tue", 1, 500_000, -1, "BIT") == next(
        i for i in range(500_000, DEVICES) if ones(tuesday, i, i))


def random_command(rng):
    key = rng.choice(["a", "b", "c"])
    offsets = [0, 1, 7, 8, 63, 64, 100, 1000, -1, -8, -100, 5000]
    unit = rng.choice([[], ["BYTE"], ["BIT"], ["bit"]])
    kind = rng.choice(["setbit", "set", "setrange", "bitcount", "bitpos", "bitop", "bitfield",
                       "bitfield_ro", "getbit", "get"])
    if kind == "setbit":
        return ["SETBIT", key, rng.randrange(0, 4000), rng.choice([0, 1])]
    if kind == "set":
        return ["SET", key, rng.choice([b"", b"\xff\x00\xf0", b"12345", bytes(rng.randrange(256) for _ in range(rng.randrange(40)))])]
    if kind == "setrange":
        return ["SETRANGE", key, rng.randrange(0, 300), bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))]
    if kind == "bitcount":
        if rng.random() < 0.2:
            return ["BITCOUNT", key]
        return ["BITCOUNT", key, rng.choice(offsets), rng.choice(offsets), *unit]
    if kind == "bitpos":
        args = ["BITPOS", key, rng.choice([0, 1])]
        extra = rng.randrange(4)
        if extra >= 1:
            args.append(rng.choice(offsets))
        if extra >= 2:
            args.append(rng.choice(offsets))
        if extra == 3:
            args += unit or ["BYTE"]
        return args
    if kind == "bitop":
        op = rng.choice(["AND", "OR", "XOR", "NOT"])
        sources = [key] if op == "NOT" else rng.sample(["a", "b", "c", "missing"], rng.randrange(1, 4))
        return ["BITOP", op, rng.choice(["a", "b", "c", "dest"]), *sources]
    if kind in ("bitfield", "bitfield_ro"):
        args = [kind.upper(), key]
        for _ in range(rng.randrange(1, 5)):
            ty = rng.choice(["u1", "u8", "i8", "u16", "i5", "u63", "i64", "i32"])
            offset = rng.choice(["0", "3", "100", "#2", "#0", "700"])
            op = rng.choice(["GET", "SET", "INCRBY", "OVERFLOW"])
            if op == "GET":
                args += ["GET", ty, offset]
            elif op == "OVERFLOW":
                args += ["OVERFLOW", rng.choice(["WRAP", "SAT", "FAIL"])]
            else:
                value = rng.choice([0, 1, -1, 127, 128, 255, -129, 2**62, -2**63, 2**63 - 1, 1000])
                args += [op, ty, offset, value]
        return args
    if kind == "getbit":
        return ["GETBIT", key, rng.randrange(0, 5000)]
    return ["GET", key]


def test_bit_commands_answer_as_redis_does(tmp_path):
    pair = Pair(tmp_path)
    try:
        rng = random.Random(29)
        for _ in range(3000):
            pair.same(*random_command(rng))
        for key in ["a", "b", "c", "dest"]:
            pair.same("GET", key)
    finally:
        pair.stop()


@pytest.mark.parametrize("command, error", [
    (["SETBIT", "k", 2**32 * 8, 1], "bit offset is not an integer or out of range"),
    (["SETBIT", "k", -1, 1], "bit offset is not an integer or out of range"),
    (["GETBIT", "k", "1.5"], "bit offset is not an integer or out of range"),
    (["SETBIT", "k", 1, 2], "bit is not an integer or out of range"),
    (["BITFIELD", "k", "GET", "u64", 0], "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is."),
    (["BITFIELD", "k", "SET", "i65", 0, 1], "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is."),
    (["BITFIELD", "k", "GET", "x8", 0], "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is."),
    (["BITFIELD", "k", "GET", "u8", "#-1"], "bit offset is not an integer or out of range"),
    (["BITFIELD", "k", "OVERFLOW", "BOUNCE"], "Invalid OVERFLOW type specified"),
    (["BITFIELD_RO", "k", "SET", "u8", 0, 1], "BITFIELD_RO only supports the GET subcommand"),
    (["BITOP", "NOT", "d", "a", "b"], "BITOP NOT must be called with a single source key."),
    (["BITPOS", "k", 2], "The bit argument must be 1 or 0."),
    (["BITCOUNT", "k", 0], "syntax error"),
])
def test_bad_bit_arguments_get_redis_errors(port, command, error):
    r = client(port)
    r.set("k", "some bits")
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command(*command)
    assert str(e.value) == error
    # The key is untouched, and another client is served.
    assert r.get("k") == b"some bits"
    assert client(port).ping() is True
