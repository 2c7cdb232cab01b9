"""oxidis and redis-server 7.0.15 started side by side, for tests that send both the same
commands and compare what comes back, errors included."""
import redis

from test_persistence import oxidis, redis_server


def outcome(client, *args):
    """The reply to a command, or the text of the error it got."""
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return ("error", str(e))


class Pair:
    """The two servers, each in a directory of its own under `tmp_path`."""

    def __init__(self, tmp_path, *args):
        (tmp_path / "oxidis").mkdir()
        (tmp_path / "redis").mkdir()
        self.ox = oxidis(tmp_path / "oxidis", "--save", "", *args)
        self.rs = redis_server(tmp_path / "redis", "--save", "", *args)

    def same(self, *args):
        """Sends a command to both; asserts the same outcome and returns it."""
        mine, theirs = outcome(self.ox.client, *args), outcome(self.rs.client, *args)
        assert mine == theirs, args
        return mine

    def stop(self):
        self.ox.stop()
        self.rs.stop()
