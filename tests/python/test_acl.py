"""Authentication and ACLs with redis-py and redis-cli: a restricted user, requirepass, the ACL
file, the security log, and what happens to connections when their user changes."""
import socket
import subprocess
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# For clients expected to fail: redis-py would otherwise retry with backoff.
NO_RETRY = Retry(NoBackoff(), 0)

NOPERM_COMMAND = "this user has no permissions to run the '{}' command"
NOPERM_KEYS = "this user has no permissions to access one of the keys used as arguments"


def test_user_restricted_to_app_keys_and_read_commands(port):
    admin = redis.Redis(port=port)
    assert admin.acl_setuser("app", enabled=True, passwords=["+secret"],
                             keys=["app:*"], commands=["+@read"]) is True
    admin.set("app:1", "hello")
    admin.set("other", "x")
    app = redis.Redis(port=port, username="app", password="secret")
    assert app.get("app:1") == b"hello"
    with pytest.raises(redis.exceptions.NoPermissionError, match=f"^{NOPERM_COMMAND.format('set')}$"):
        app.set("app:1", "changed")
    with pytest.raises(redis.exceptions.NoPermissionError, match=f"^{NOPERM_KEYS}$"):
        app.get("other")
    assert admin.get("app:1") == b"hello"
    # redis-py's CLIENT SETINFO on connecting was refused too (twice, one grouped entry).
    log = admin.acl_log()
    assert [(e["reason"], e["object"], e["username"], e["context"], e["count"]) for e in log] == [
        ("key", "other", "app", "toplevel", 1),
        ("command", "set", "app", "toplevel", 1),
        ("command", "client|setinfo", "app", "toplevel", 2),
    ]
    assert log[0]["client-info"]["user"] == "app"
    assert admin.acl_getuser("app")["keys"] == ["~app:*"]
    assert admin.acl_dryrun("app", "get", "other") == \
        b"This user has no permissions to access the 'other' key"


def test_read_and_write_key_patterns(port):
    admin = redis.Redis(port=port)
    admin.execute_command("ACL", "SETUSER", "worker", "on", "nopass", "%R~jobs:*", "%W~results:*",
                          "+@all")
    worker = redis.Redis(port=port, username="worker", password="any")
    admin.rpush("jobs:1", "a")
    assert worker.lrange("jobs:1", 0, -1) == [b"a"]
    assert worker.set("results:1", "done") is True
    with pytest.raises(redis.exceptions.NoPermissionError, match=f"^{NOPERM_KEYS}$"):
        worker.get("results:1")
    with pytest.raises(redis.exceptions.NoPermissionError, match=f"^{NOPERM_KEYS}$"):
        worker.lpop("jobs:1")


def test_requirepass_with_redis_py_and_redis_cli(start_oxidis):
    port = start_oxidis("--requirepass", "s3cret")
    anonymous = redis.Redis(port=port, protocol=2, retry=NO_RETRY)
    with pytest.raises(redis.exceptions.AuthenticationError, match="^Authentication required.$"):
        anonymous.ping()
    with pytest.raises(redis.exceptions.AuthenticationError,
                       match="^invalid username-password pair or user is disabled.$"):
        redis.Redis(port=port, password="wrong", retry=NO_RETRY).ping()
    r = redis.Redis(port=port, password="s3cret")
    assert r.set("k", "v") is True
    cli = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", "s3cret", "GET", "k"],
                         capture_output=True, text=True, check=True)
    assert cli.stdout == "v\n"
    # CONFIG SET requirepass changes the default user's password at once.
    assert r.config_set("requirepass", "n3w") is True
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, password="s3cret", retry=NO_RETRY).ping()
    assert redis.Redis(port=port, password="n3w").get("k") == b"v"


def test_acl_file_save_load_and_restart(start_oxidis, tmp_path):
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("user default on nopass ~* &* +@all\n")
    port = start_oxidis("--aclfile", str(aclfile))
    r = redis.Redis(port=port)
    r.execute_command("ACL", "SETUSER", "sensor", "on", ">pw", "~sensor:*", "resetchannels",
                      "&telemetry", "-@all", "+hset", "+publish")
    assert r.acl_save() is True
    assert aclfile.read_text() == (
        "user default on nopass ~* &* +@all\n"
        "user sensor on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 "
        "~sensor:* resetchannels &telemetry -@all +hset +publish\n")
    sensor = redis.Redis(port=port, username="sensor", password="pw", retry=NO_RETRY)
    assert sensor.hset("sensor:17", mapping={"temperature": 25}) == 1
    assert sensor.publish("telemetry", "25") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        sensor.publish("other", "25")
    # ACL LOAD replaces every user: connections of replaced users are closed.
    aclfile.write_text("user default on nopass ~* &* +@all\nuser sensor on >pw2 ~* +@all\n")
    assert r.acl_load() is True
    with pytest.raises(redis.exceptions.ConnectionError):
        sensor.hset("sensor:17", "humidity", 1)
    assert redis.Redis(port=port, username="sensor", password="pw2").hget("sensor:17", "temperature") == b"25"


def test_bad_acl_file_changes_nothing(start_oxidis, tmp_path):
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("user alice on >a ~* +@all\n")
    port = start_oxidis("--aclfile", str(aclfile))
    r = redis.Redis(port=port)
    aclfile.write_text("user alice on >a ~* +@all\nuser bob on +nosuchcommand\nuser alice off\n")
    with pytest.raises(redis.ResponseError) as error:
        r.acl_load()
    assert str(error.value) == (
        f"{aclfile}:2: Error in applying operation '+nosuchcommand': Unknown command or category "
        f"name in ACL. WARNING: Duplicate user 'alice' found on line 3. WARNING: ACL errors "
        f"detected, no change to the previously active ACL rules was performed")
    assert r.acl_users() == ["alice", "default"]


def test_deleted_user_is_disconnected(port):
    admin = redis.Redis(port=port)
    admin.acl_setuser("temp", enabled=True, nopass=True, keys=["*"], commands=["+@all"])
    temp = redis.Redis(port=port, username="temp", password="x", retry=NO_RETRY)
    assert temp.ping() is True
    assert admin.acl_deluser("temp") == 1
    with pytest.raises(redis.exceptions.ConnectionError):
        temp.ping()
    assert admin.ping() is True


def test_subscriber_losing_its_channel_is_disconnected(port):
    admin = redis.Redis(port=port)
    admin.execute_command("ACL", "SETUSER", "listener", "on", "nopass", "resetchannels", "&news",
                          "+@all")
    listener = redis.Redis(port=port, username="listener", password="x")
    pubsub = listener.pubsub()
    pubsub.subscribe("news")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    assert [c["user"] for c in admin.client_list()] == ["default", "listener"]
    admin.execute_command("ACL", "SETUSER", "listener", "resetchannels")
    assert [c["user"] for c in admin.client_list()] == ["default"]
    # redis-py reconnects and subscribes again, which is now refused.
    with pytest.raises(redis.exceptions.NoPermissionError,
                       match="^this user has no permissions to access one of the channels used as arguments$"):
        pubsub.get_message(timeout=1)


def test_maxclients_refuses_extra_connections_cleanly(start_oxidis):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    port = start_oxidis("--maxclients", "100")
    kept = [redis.Redis(port=port, single_connection_client=True) for _ in range(100)]
    for n, client in enumerate(kept):
        assert client.set(f"k{n}", n) is True
    refused = 0
    for _ in range(1000):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = extra.recv(100)
                if not chunk:
                    break
                reply += chunk
            assert reply == b"-ERR max number of clients reached\r\n"
            assert extra.recv(100) == b""
            refused += 1
    assert refused == 1000
    assert [c.get(f"k{n}") for n, c in enumerate(kept)] == [str(n).encode() for n in range(100)]
    stats = kept[0].info("stats")
    assert stats["rejected_connections"] == 1000
    for client in kept:
        client.close()
    deadline = time.time() + 5
    while kept[0].info("clients")["connected_clients"] != 1 and time.time() < deadline:
        time.sleep(0.05)
    assert kept[0].info("clients")["connected_clients"] == 1
