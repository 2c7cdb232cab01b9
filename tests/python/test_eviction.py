"""A cache within its memory, through redis-py: filled well past `maxmemory` under each
policy, oxidis keeps `used_memory` at the limit, never refuses a write it can make room for,
and keeps the keys its policy says it should; keys' access clocks (OBJECT IDLETIME and FREQ)
survive DEBUG RELOAD, a restart, and dump files moving to and from redis-server 7.0.15."""
import random
import time

import pytest
import redis

from test_persistence import oxidis, redis_server

LIMIT = 8 * 1024 * 1024
VALUE = b"v" * 400
# About 40 MB of values: five times the limit.
KEYS = 100_000
BATCH = 500


# What the measuring command itself holds while it runs (its request, the INFO text, reply
# buffers): eviction runs before a command, so that command's own memory comes on top.
SLACK = LIMIT // 100


def over_the_limit(r):
    return r.info("memory")["used_memory"] > LIMIT + SLACK


def start_with(tmp_path, policy):
    server = oxidis(tmp_path, "--save", "", "--maxmemory", str(LIMIT), "--maxmemory-policy", policy)
    return server, server.client


def write_all(r, keys, ttl=None):
    """SETs every key in pipelined batches; every reply must be OK (no -OOM)."""
    for start in range(0, len(keys), BATCH):
        p = r.pipeline(transaction=False)
        for key in keys[start:start + BATCH]:
            p.set(key, VALUE, ex=ttl(key) if ttl else None)
        assert all(reply is True for reply in p.execute())


def surviving(r, keys):
    p = r.pipeline(transaction=False)
    for key in keys:
        p.exists(key)
    return sum(p.execute())


def settle(r):
    """Eviction cut short by its time limit goes on in the background: wait for it."""
    deadline = time.time() + 5
    while over_the_limit(r):
        if time.time() > deadline:
            pytest.fail(f"used_memory stays above maxmemory: {r.info('memory')['used_memory']}")
        time.sleep(0.05)


@pytest.mark.parametrize("policy", ["allkeys-random", "allkeys-lru", "allkeys-lfu"])
def test_allkeys_policies_stay_within_maxmemory_and_keep_hot_keys(tmp_path, policy):
    server, r = start_with(tmp_path, policy)
    try:
        hot = [f"hot:{i}" for i in range(500)]
        write_all(r, hot)
        cold = [f"cold:{i}" for i in range(KEYS)]
        for start in range(0, KEYS, 1000):
            write_all(r, cold[start:start + 1000])
            # The hot keys are read all along, as a cache's working set is.
            p = r.pipeline(transaction=False)
            for key in hot:
                p.get(key)
            p.execute()
            # The LRU clock counts seconds: cold keys of the seconds before are idler than
            # the hot keys.
            if policy == "allkeys-lru" and start % 10_000 == 9000:
                time.sleep(1.05)
        settle(r)
        info = r.info()
        assert info["evicted_keys"] > KEYS // 2
        assert r.dbsize() + info["evicted_keys"] == KEYS + len(hot)
        kept_hot = surviving(r, hot)
        kept_cold = surviving(r, cold)
        if policy == "allkeys-random":
            # Random eviction takes no account of use: the hot keys fare like the rest.
            assert kept_hot < len(hot) * 0.6
        else:
            assert kept_hot >= len(hot) * 0.95, (kept_hot, kept_cold)
        assert kept_cold < KEYS * 0.3
    finally:
        server.stop()


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"])
def test_volatile_policies_evict_only_keys_with_a_ttl(tmp_path, policy):
    server, r = start_with(tmp_path, policy)
    try:
        # 2 MB of keys without a TTL, which no volatile policy may evict.
        persistent = [f"config:{i}" for i in range(5000)]
        write_all(r, persistent)
        volatile = [f"session:{i}" for i in range(KEYS)]
        ttls = {key: 1000 + i for i, key in enumerate(volatile)}
        shuffled = volatile[:]
        random.Random(7).shuffle(shuffled)
        write_all(r, shuffled, ttl=ttls.get)
        settle(r)
        assert surviving(r, persistent) == len(persistent)
        assert r.info()["evicted_keys"] > KEYS // 2
        if policy == "volatile-ttl":
            # The soonest to expire go first: of the earliest fifth under 5 % is left (redis-server 7.0.15: about 2 %), of the
            # latest fifth most are.
            fifth = KEYS // 5
            assert surviving(r, volatile[:fifth]) < fifth * 0.05
            assert surviving(r, volatile[-fifth:]) > fifth * 0.4
    finally:
        server.stop()


def test_volatile_policy_refuses_writes_once_no_key_has_a_ttl(tmp_path):
    server, r = start_with(tmp_path, "volatile-lru")
    try:
        write_all(r, [f"session:{i}" for i in range(1000)], ttl=lambda _: 1000)
        with pytest.raises(redis.exceptions.OutOfMemoryError) as refused:
            for start in range(0, KEYS, BATCH):
                write_all(r, [f"config:{i}" for i in range(start, start + BATCH)])
        assert str(refused.value).endswith("command not allowed when used memory > 'maxmemory'.")
        assert r.dbsize() > 0 and not r.keys("session:*")
        # Reads still work, and a write that frees memory is allowed.
        assert r.get("config:0") == VALUE
        assert r.delete("config:0") == 1
    finally:
        server.stop()


def test_noeviction_refuses_writes_and_serves_reads(tmp_path):
    server, r = start_with(tmp_path, "noeviction")
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            write_all(r, [f"k:{i}" for i in range(KEYS)])
        assert r.info()["evicted_keys"] == 0
        assert r.get("k:0") == VALUE
    finally:
        server.stop()


def test_lowering_maxmemory_evicts_at_once_while_other_clients_are_served(tmp_path):
    server, r = start_with(tmp_path, "allkeys-lru")
    try:
        r.config_set("maxmemory", 0)
        write_all(r, [f"k:{i}" for i in range(50_000)])
        assert r.info("memory")["used_memory"] > 2 * LIMIT
        other = redis.Redis(port=server.port)
        r.config_set("maxmemory", LIMIT)
        started = time.time()
        assert other.set("after", "lowering") is True
        assert time.time() - started < 1
        settle(other)
        # Written in the same second as the keys evicted around it, "after" may have gone with
        # them (the LRU clock counts seconds); the server serves on within the limit.
        assert other.set("settled", "yes") is True
        assert other.get("settled") == b"yes"
    finally:
        server.stop()


def test_lru_idle_time_survives_reload_restart_and_redis(tmp_path):
    server = oxidis(tmp_path, "--save", "", "--maxmemory-policy", "allkeys-lru",
                    "--enable-debug-command", "yes")
    r = server.client
    try:
        r.set("fresh", "reading")
        payload = r.dump("fresh")
        r.restore("idle", 0, payload, idletime=5000)
        assert r.object("idletime", "idle") == 5000
        # TYPE, TTL, EXISTS and OBJECT look without touching the clock; GET touches it.
        r.type("idle"), r.ttl("idle"), r.exists("idle"), r.object("encoding", "idle")
        assert r.object("idletime", "idle") == 5000
        r.debug_object("idle")
        assert r.execute_command("DEBUG", "RELOAD") == b"OK"
        assert 5000 <= r.object("idletime", "idle") <= 5002
        r.save()
    finally:
        server.stop()
    # Redis reads the IDLE opcode oxidis wrote, and oxidis reads Redis's.
    peer = redis_server(tmp_path, "--save", "", "--maxmemory-policy", "allkeys-lru")
    try:
        assert 5000 <= peer.client.object("idletime", "idle") <= 5003
        peer.client.restore("older", 0, payload, idletime=9000)
        peer.client.save()
    finally:
        peer.stop()
    server = oxidis(tmp_path, "--save", "", "--maxmemory-policy", "allkeys-lru")
    try:
        assert 9000 <= server.client.object("idletime", "older") <= 9003
        assert server.client.get("older") == b"reading"
        assert server.client.object("idletime", "older") == 0
    finally:
        server.stop()


def test_lfu_frequency_grows_with_use_and_survives_reload_and_redis(tmp_path):
    server = oxidis(tmp_path, "--save", "", "--maxmemory-policy", "allkeys-lfu",
                    "--lfu-log-factor", "0", "--enable-debug-command", "yes")
    r = server.client
    try:
        # Not a small integer: Redis shares those between keys, clock included, when
        # maxmemory is 0.
        r.set("k", "reading")
        assert r.object("freq", "k") == 5
        for _ in range(20):
            r.get("k")
        # With lfu-log-factor 0 every access counts.
        assert r.object("freq", "k") == 25
        with pytest.raises(redis.exceptions.ResponseError, match="An LFU maxmemory policy is selected"):
            r.object("idletime", "k")
        r.restore("often", 0, r.dump("k"), frequency=200)
        assert r.object("freq", "k") == 26
        assert r.execute_command("DEBUG", "RELOAD") == b"OK"
        assert r.object("freq", "often") == 200
        r.save()
    finally:
        server.stop()
    peer = redis_server(tmp_path, "--save", "", "--maxmemory-policy", "allkeys-lfu")
    try:
        assert peer.client.object("freq", "often") == 200
        assert peer.client.object("freq", "k") == 26
    finally:
        peer.stop()


def test_lazy_eviction_frees_big_values_on_the_lazyfree_thread(tmp_path):
    server = oxidis(tmp_path, "--save", "", "--maxmemory", str(LIMIT), "--maxmemory-policy",
                    "allkeys-random", "--lazyfree-lazy-eviction", "yes")
    r = server.client
    try:
        # Hashes of 200 fields are hash tables: freeing one takes 200 allocations, past the
        # 64 that Redis frees in line.
        for start in range(0, 400, 50):
            p = r.pipeline(transaction=False)
            for i in range(start, start + 50):
                p.hset(f"h:{i}", mapping={f"field:{j}": VALUE for j in range(200)})
            assert all(reply == 200 for reply in p.execute())
        settle(r)
        info = r.info()
        assert info["evicted_keys"] > 0
        deadline = time.time() + 5
        while r.info("memory")["lazyfree_pending_objects"] and time.time() < deadline:
            time.sleep(0.05)
        assert r.info("memory")["lazyfreed_objects"] == r.info()["evicted_keys"]
    finally:
        server.stop()


def test_client_no_touch_reads_leave_the_clock_but_touch_moves_it(tmp_path):
    server = oxidis(tmp_path, "--save", "", "--maxmemory-policy", "allkeys-lru")
    r = server.client
    try:
        r.set("reading", "x")
        r.restore("idle", 0, r.dump("reading"), idletime=1000)
        quiet = redis.Redis(port=server.port, single_connection_client=True)
        assert quiet.execute_command("CLIENT", "NO-TOUCH", "ON") == b"OK"
        assert quiet.get("idle") == b"x"
        assert quiet.eval("return redis.call('get', KEYS[1])", 1, "idle") == b"x"
        assert r.object("idletime", "idle") >= 1000
        assert quiet.touch("idle") == 1
        assert r.object("idletime", "idle") == 0
    finally:
        server.stop()
