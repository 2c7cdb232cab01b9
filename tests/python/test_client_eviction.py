"""Client eviction (`maxmemory-clients`, Redis 7.0) through redis-py: a client that sends
half a huge request, or asks for replies it never reads, holds that memory in the server;
past the limit the biggest such clients are closed first, clients with CLIENT NO-EVICT are
kept, and everyone else goes on being served."""
import time

import pytest
import redis

MB = 1024 * 1024


def names(r):
    return sorted(c["name"] for c in r.client_list())


def client(r, name):
    return next((c for c in r.client_list() if c["name"] == name), None)


def query_buffer(r, name):
    return int(client(r, name)["qbuf"])


def wait_for(condition, what):
    deadline = time.time() + 10
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def half_request(port, name, size):
    """A connection that sends a request with an argument of `size` bytes, all but its last
    byte: the server holds it in the client's query buffer."""
    conn = redis.Connection(port=port, client_name=name)
    conn.connect()
    conn.send_packed_command([b"*2\r\n$3\r\nGET\r\n$%d\r\n" % size + b"k" * (size - 1)])
    return conn


@pytest.fixture
def control(port):
    """A client that eviction spares, as the Tcl suite's own connection is."""
    r = redis.Redis(port=port, client_name="control")
    assert r.execute_command("CLIENT", "NO-EVICT", "on") == b"OK"
    return r


def test_lowering_the_limit_closes_the_biggest_clients_first(port, control):
    sizes = {"small": 200_000, "medium": MB, "large": 2 * MB}
    conns = [half_request(port, name, size) for name, size in sizes.items()]
    for name, size in sizes.items():
        wait_for(lambda: query_buffer(control, name) >= size - 1, f"{name}'s query buffer")
        assert int(client(control, name)["tot-mem"]) > size
    assert names(control) == ["control", "large", "medium", "small"]

    control.config_set("maxmemory-clients", 2 * MB)
    assert names(control) == ["control", "medium", "small"]
    control.config_set("maxmemory-clients", 512 * 1024)
    assert names(control) == ["control", "small"]
    assert control.info("stats")["evicted_clients"] == 2
    assert sum(int(c["tot-mem"]) for c in control.client_list()) <= 512 * 1024
    # The percentage form is of maxmemory, and no limit is under 128 KB.
    control.config_set("maxmemory", 100 * MB)
    control.config_set("maxmemory-clients", "1%")
    assert control.config_get("maxmemory-clients") == {"maxmemory-clients": "1%"}
    assert names(control) == ["control", "small"]
    control.config_set("maxmemory-clients", 1)
    assert names(control) == ["control"]
    assert control.info("stats")["evicted_clients"] == 3
    for conn in conns:
        conn.disconnect()


def test_a_client_that_does_not_read_is_evicted_by_its_replies(port, control):
    control.setrange("big", MB - 1, "v")
    reader = redis.Connection(port=port, client_name="reader")
    reader.connect()
    # 40 MB of replies the client never reads: more than the sockets hold, so the rest waits
    # in the server, and the connection still reads and runs the next requests meanwhile.
    for _ in range(40):
        reader.send_command("GET", "big")
    wait_for(lambda: int(client(control, "reader")["omem"]) > 20 * MB, "the reader's output to queue")
    assert int(client(control, "reader")["tot-mem"]) > 20 * MB
    assert control.info("memory")["mem_clients_normal"] > 20 * MB
    other = redis.Redis(port=port)
    assert other.get("big") == b"\0" * (MB - 1) + b"v"

    control.config_set("maxmemory-clients", 10 * MB)
    wait_for(lambda: client(control, "reader") is None, "the reader to be evicted")
    assert control.info("stats")["evicted_clients"] == 1
    assert other.ping() is True
    reader.disconnect()


def test_no_evict_clients_are_spared_and_counted(port, control):
    spared = redis.Connection(port=port, client_name="spared")
    spared.connect()
    spared.send_command("CLIENT", "NO-EVICT", "on")
    assert spared.read_response() == b"OK"
    spared.send_packed_command([b"*2\r\n$3\r\nGET\r\n$%d\r\n" % MB + b"k" * 1000])
    spared.send_packed_command([b"k" * (MB - 1001)])
    small = half_request(port, "small", 200_000)
    wait_for(lambda: query_buffer(control, "spared") >= MB - 1, "spared's query buffer")
    wait_for(lambda: query_buffer(control, "small") >= 200_000 - 1, "small's query buffer")

    control.config_set("maxmemory-clients", 512 * 1024)
    # Only `small` may go; the clients stay over the limit, and the server serves on.
    assert names(control) == ["control", "spared"]
    assert control.info("stats")["evicted_clients"] == 1
    assert int(client(control, "spared")["tot-mem"]) > 512 * 1024
    for _ in range(100):
        assert control.ping() is True
    # As in Redis, while over the limit any client that may be evicted is: a new one too.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, retry=None).set("k", "v")
    assert control.info("stats")["evicted_clients"] == 2
    for conn in (spared, small):
        conn.disconnect()
