"""Client-side caching (CLIENT TRACKING) through redis-py: a RESP3 connection gets invalidation
pushes for the keys it read when another client changes them, expires or evicts them, and a
null one on FLUSHALL; a RESP2 client subscribed to __redis__:invalidate gets them when another
connection redirects there; BCAST prefixes, OPTIN and NOLOOP work as in Redis.

redis-py's own client-side cache (`cache_config`) refuses servers older than Redis 7.4 (it
checks the version HELLO reports), redis-server 7.0.15 included, so the pushes are read from
redis-py's RESP3 connection directly."""
import socket
import time

import pytest
import redis

from test_persistence import oxidis


def tracking_connection(port, *options):
    pushes = []
    conn = redis.Connection(port=port, protocol=3)
    conn.connect()
    conn._parser.set_invalidation_push_handler(pushes.append)
    conn.send_command("CLIENT", "TRACKING", "ON", *options)
    assert conn.read_response() == b"OK"
    return conn, pushes


def call(conn, *args):
    conn.send_command(*args)
    return conn.read_response()


def wait_for(pushes, count, conn):
    """Reads (with PINGs) until `count` pushes arrived."""
    deadline = time.time() + 5
    while len(pushes) < count and time.time() < deadline:
        assert call(conn, "PING") == b"PONG"
        time.sleep(0.01)
    return pushes


def test_resp3_invalidations_for_writes_expiry_eviction_and_flush(tmp_path):
    server = oxidis(tmp_path, "--save", "")
    writer = server.client
    try:
        conn, pushes = tracking_connection(server.port)
        writer.set("robot:pose", "x=1")
        writer.set("robot:map", "v1", px=300)
        assert call(conn, "GET", "robot:pose") == b"x=1"
        assert call(conn, "GET", "robot:map") == b"v1"
        assert call(conn, "CLIENT", "TRACKINGINFO") == {
            b"flags": [b"on"], b"redirect": 0, b"prefixes": []}
        assert writer.info()["tracking_total_keys"] == 2
        writer.set("robot:pose", "x=2")
        assert wait_for(pushes, 1, conn) == [[b"invalidate", [b"robot:pose"]]]
        # The key is forgotten once invalidated: a second change sends nothing until it is
        # read again.
        writer.set("robot:pose", "x=3")
        time.sleep(0.4)
        assert wait_for(pushes, 2, conn)[1] == [b"invalidate", [b"robot:map"]]
        assert len(pushes) == 2
        assert call(conn, "GET", "robot:pose") == b"x=3"
        writer.flushall()
        assert wait_for(pushes, 3, conn)[2] == [b"invalidate", None]
        assert writer.info()["tracking_total_keys"] == 0
        # A key evicted by maxmemory is invalidated too.
        writer.set("cache:1", "v" * 1000)
        assert call(conn, "GET", "cache:1") == b"v" * 1000
        writer.config_set("maxmemory-policy", "allkeys-random")
        writer.config_set("maxmemory", 1)
        assert wait_for(pushes, 4, conn)[3] == [b"invalidate", [b"cache:1"]]
        writer.config_set("maxmemory", 0)
    finally:
        server.stop()


def test_resp2_redirect_to_a_subscribed_client(tmp_path):
    server = oxidis(tmp_path, "--save", "")
    writer = server.client
    try:
        listener = socket.create_connection(("127.0.0.1", server.port))
        listener.sendall(b"CLIENT ID\r\nSUBSCRIBE __redis__:invalidate\r\n")
        time.sleep(0.1)
        listener_id = int(listener.recv(1000).split(b"\r\n")[0][1:])
        tracked = redis.Redis(port=server.port, single_connection_client=True)
        assert tracked.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id) == b"OK"
        assert tracked.execute_command("CLIENT", "GETREDIR") == listener_id
        tracked.get("sensor:7")
        writer.set("sensor:7", "25.5")
        listener.settimeout(2)
        assert listener.recv(1000) == (
            b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$8\r\nsensor:7\r\n")
        with pytest.raises(redis.exceptions.ResponseError) as missing:
            tracked.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", 999999)
        assert str(missing.value) == "The client ID you want redirect to does not exist"
        listener.close()
    finally:
        server.stop()


def test_bcast_prefixes_optin_and_noloop(tmp_path):
    server = oxidis(tmp_path, "--save", "")
    writer = server.client
    try:
        conn, pushes = tracking_connection(server.port, "BCAST", "PREFIX", "user:", "NOLOOP")
        writer.mset({"user:1": "a", "user:2": "b", "order:1": "c"})
        assert wait_for(pushes, 1, conn) == [[b"invalidate", [b"user:1", b"user:2"]]]
        # NOLOOP: its own changes send it nothing.
        assert call(conn, "SET", "user:3", "d") == b"OK"
        writer.set("user:4", "e")
        assert wait_for(pushes, 2, conn)[1] == [b"invalidate", [b"user:4"]]
        with pytest.raises(redis.exceptions.ResponseError) as overlapping:
            call(conn, "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "us")
        assert str(overlapping.value) == (
            "Prefix 'us' overlaps with an existing prefix 'user:'. "
            "Prefixes for a single client must not overlap.")
        assert writer.info()["tracking_total_prefixes"] == 1

        optin, optin_pushes = tracking_connection(server.port, "OPTIN")
        call(optin, "GET", "order:1")
        assert call(optin, "CLIENT", "CACHING", "YES") == b"OK"
        call(optin, "GET", "user:1")
        writer.set("order:1", "x")
        writer.set("user:1", "y")
        assert wait_for(optin_pushes, 1, optin) == [[b"invalidate", [b"user:1"]]]
        with pytest.raises(redis.exceptions.ResponseError) as refused:
            call(optin, "CLIENT", "CACHING", "NO")
        assert str(refused.value) == (
            "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")
    finally:
        server.stop()
