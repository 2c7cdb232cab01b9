"""Functions and script effects move between oxidis and redis-server 7.0.15 in both directions:
libraries in an RDB and in an AOF, FUNCTION DUMP payloads, and the writes of scripts (which both
servers log as their effects, so replaying the log gives the same data even for scripts that read
the clock)."""
from test_persistence import assert_holds, oxidis, redis_server, snapshot

LIBRARY = (
    "#!lua name=fleet\n"
    "redis.register_function('report', function(keys, args)\n"
    "  redis.call('HSET', keys[1], 'pose', args[1], 'seen', redis.call('TIME')[1])\n"
    "  return redis.call('HLEN', keys[1])\n"
    "end)\n"
    "redis.register_function{function_name='pose', flags={'no-writes'},\n"
    "  description='where a robot is',\n"
    "  callback=function(keys) return redis.call('HGET', keys[1], 'pose') end}\n"
)


def libraries(server):
    """Each library's name and code, and its functions with their descriptions and flags."""
    found = {}
    for library in server.client.function_list(withcode=True):
        fields = dict(zip(library[::2], library[1::2]))
        functions = []
        for function in fields[b"functions"]:
            f = dict(zip(function[::2], function[1::2]))
            functions.append((f[b"name"], f[b"description"], sorted(f[b"flags"])))
        found[fields[b"library_name"]] = (fields[b"library_code"], sorted(functions))
    return found


def use(server):
    r = server.client
    assert r.function_load(LIBRARY) == b"fleet"
    assert r.fcall("report", 1, "robot:7", "1.5,-2.0") == 2
    r.eval("redis.call('SET', 'tick', redis.call('TIME')[1]); "
           "redis.call('RPUSH', 'jobs', 'a', 'b'); redis.call('LPOP', 'jobs')", 0)


def test_functions_in_an_rdb_load_in_both_directions(tmp_path):
    rs = redis_server(tmp_path, "--save", "")
    use(rs)
    expected, expected_libraries = snapshot(rs), libraries(rs)
    assert rs.client.save() is True
    rs.stop()
    ox = oxidis(tmp_path, "--save", "")
    assert libraries(ox) == expected_libraries
    assert ox.client.fcall_ro("pose", 1, "robot:7") == b"1.5,-2.0"
    assert ox.client.save() is True
    assert_holds(ox, expected)
    rs = redis_server(tmp_path, "--save", "")
    assert libraries(rs) == expected_libraries
    assert rs.client.fcall("report", 1, "robot:8", "0,0") == 2
    rs.stop()


def test_functions_and_script_effects_in_an_aof_load_in_both_directions(tmp_path):
    ox = oxidis(tmp_path, "--save", "", "--appendonly", "yes")
    use(ox)
    expected, expected_libraries = snapshot(ox), libraries(ox)
    ox.stop()
    rs = redis_server(tmp_path, "--save", "", "--appendonly", "yes")
    assert libraries(rs) == expected_libraries
    assert rs.client.fcall_ro("pose", 1, "robot:7") == b"1.5,-2.0"
    rs.client.fcall("report", 1, "robot:9", "3,3")
    expected = snapshot(rs)
    rs.stop()
    ox = oxidis(tmp_path, "--save", "", "--appendonly", "yes")
    assert libraries(ox) == expected_libraries
    assert_holds(ox, expected)


def test_function_dump_payloads_restore_in_both_directions(tmp_path):
    (tmp_path / "ox").mkdir()
    ox = oxidis(tmp_path / "ox", "--save", "")
    rs = redis_server(tmp_path, "--save", "")
    try:
        assert rs.client.function_load(LIBRARY) == b"fleet"
        assert ox.client.function_restore(rs.client.function_dump()) is True
        assert libraries(ox) == libraries(rs)
        ox.client.function_load(LIBRARY.replace("fleet", "fleet2").replace("'report'", "'r2'")
                                .replace("'pose'", "'p2'"))
        assert rs.client.function_restore(ox.client.function_dump(), "REPLACE") is True
        assert libraries(rs) == libraries(ox)
        assert sorted(libraries(rs)) == [b"fleet", b"fleet2"]
    finally:
        ox.stop()
        rs.stop()
