"""Geo through redis-py: nearest-robot queries, the same points and searches answered alike by
oxidis and redis-server 7.0.15 (scores member for member, results in the same order), and
coordinates out of range refused with Redis's error."""
import random

import pytest
import redis

from side_by_side import Pair


def client(port, **kwargs):
    return redis.Redis(host="127.0.0.1", port=port, **kwargs)


def test_nearest_robots(port):
    r = client(port, decode_responses=True)
    # A warehouse in Berlin: robots a few tens of metres apart, one across town.
    robots = {"r1": (13.4050, 52.5200), "r2": (13.4053, 52.5201), "r3": (13.4060, 52.5195),
              "r4": (13.4100, 52.5230), "far": (13.2846, 52.5593)}
    assert r.geoadd("robots", [c for name, (lon, lat) in robots.items() for c in (lon, lat, name)]) == 5
    nearest = r.geosearch("robots", longitude=13.4051, latitude=52.5200, radius=1, unit="km",
                          sort="ASC", count=3, withdist=True)
    assert [name for name, _ in nearest] == ["r1", "r2", "r3"]
    assert all(d < 0.1 for _, d in nearest)
    assert r.geosearch("robots", member="r1", width=200, height=200, unit="m", sort="ASC") == [
        "r1", "r2", "r3"]
    assert r.geodist("robots", "r1", "far", unit="km") > 8
    # A robot moves: GEOADD again updates its place (CH counts it).
    assert r.geoadd("robots", [13.2847, 52.5592, "r4"], ch=True) == 1
    assert r.geosearch("robots", member="far", radius=50, unit="m", sort="ASC") == ["far", "r4"]
    assert r.geosearchstore("near:r1", "robots", member="r1", radius=100, unit="m",
                            storedist=True) == 3
    assert r.zrange("near:r1", 0, -1) == ["r1", "r2", "r3"]


def test_geo_commands_answer_as_redis_does(tmp_path):
    pair = Pair(tmp_path)
    try:
        rng = random.Random(2029)
        points = []
        for i in range(3000):
            # Clustered around a few cities, plus points anywhere, poles and the date line too.
            if i % 10 == 0:
                lon, lat = rng.uniform(-180, 180), rng.uniform(-85.05112878, 85.05112878)
            else:
                base_lon, base_lat = rng.choice([(13.4, 52.5), (-0.12, 51.5), (151.2, -33.9), (179.9, 0)])
                lon = max(-180, min(180, base_lon + rng.gauss(0, 0.5)))
                lat = base_lat + rng.gauss(0, 0.5)
            points += [f"{lon:.6f}", f"{lat:.6f}", f"p{i}"]
        for start in range(0, len(points), 300):
            pair.same("GEOADD", "pts", *points[start:start + 300])
        assert pair.same("ZRANGE", "pts", 0, -1, "WITHSCORES")
        pair.same("GEOADD", "pts", "CH", "XX", "13.4", "52.5", "p1", "0", "0", "new")
        pair.same("GEOPOS", "pts", "p1", "p2", "missing", "p2999")
        pair.same("GEOHASH", "pts", "p1", "p7", "missing")
        pair.same("GEODIST", "pts", "p1", "p2", "km")
        pair.same("GEODIST", "pts", "p1", "p3", "mi")
        for _ in range(150):
            query = ["GEOSEARCH", "pts"]
            if rng.random() < 0.5:
                query += ["FROMMEMBER", f"p{rng.randrange(3000)}"]
            else:
                query += ["FROMLONLAT", f"{rng.uniform(-180, 180):.4f}", f"{rng.uniform(-85, 85):.4f}"]
            unit = rng.choice(["m", "km", "mi", "ft"])
            size = rng.choice([1, 50, 500, 5000, 200_000])
            if unit == "m":
                size *= 100
            if rng.random() < 0.5:
                query += ["BYRADIUS", size, unit]
            else:
                query += ["BYBOX", size, size * rng.choice([1, 2, 0.5]), unit]
            query.append(rng.choice(["ASC", "DESC"]))
            if rng.random() < 0.5:
                query += ["COUNT", rng.choice([1, 5, 50])]
            query += rng.sample(["WITHDIST", "WITHCOORD", "WITHHASH"], rng.randrange(4))
            pair.same(*query)
        pair.same("GEORADIUS", "pts", "13.4", "52.5", "50", "km", "WITHDIST", "ASC")
        pair.same("GEORADIUSBYMEMBER", "pts", "p1", "20", "km", "DESC", "COUNT", "7", "WITHCOORD")
        pair.same("GEORADIUS", "pts", "13.4", "52.5", "10", "km", "STORE", "dst")
        pair.same("ZRANGE", "dst", 0, -1, "WITHSCORES")
        pair.same("GEOSEARCHSTORE", "dst2", "pts", "FROMMEMBER", "p3", "BYBOX", "30", "30", "km",
                  "STOREDIST", "ASC", "COUNT", "20")
        pair.same("ZRANGE", "dst2", 0, -1, "WITHSCORES")
    finally:
        pair.stop()


@pytest.mark.parametrize("command, error", [
    (["GEOADD", "g", "181", "10", "m"], "invalid longitude,latitude pair 181.000000,10.000000"),
    (["GEOADD", "g", "10", "85.06", "m"], "invalid longitude,latitude pair 10.000000,85.060000"),
    (["GEOADD", "g", "ten", "10", "m"], "value is not a valid float"),
    (["GEOADD", "g", "NX", "XX", "1", "1", "m"], "syntax error"),
    (["GEOSEARCH", "g", "FROMLONLAT", "0", "-90", "BYRADIUS", "1", "km"],
     "invalid longitude,latitude pair 0.000000,-90.000000"),
    (["GEOSEARCH", "g", "FROMMEMBER", "nobody", "BYRADIUS", "1", "km"],
     "could not decode requested zset member"),
    (["GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "-1", "km"], "radius cannot be negative"),
    (["GEOSEARCH", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "parsec"],
     "unsupported unit provided. please use M, KM, FT, MI"),
    (["GEOSEARCH", "g", "BYRADIUS", "1", "km", "ASC", "COUNT", "3"],
     "exactly one of FROMMEMBER or FROMLONLAT can be specified for GEOSEARCH"),
    (["GEORADIUS", "g", "0", "0", "1", "km", "ANY"], "the ANY argument requires COUNT argument"),
    (["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d", "WITHDIST"],
     "STORE option in GEORADIUS is not compatible with WITHDIST, WITHHASH and WITHCOORD options"),
])
def test_bad_geo_arguments_get_redis_errors(port, command, error):
    r = client(port)
    r.geoadd("g", [1, 1, "m"])
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command(*command)
    assert str(e.value) == error
    assert client(port).zcard("g") == 1
