"""Lua scripts and functions through unchanged libraries: redis-py's Lock contended by several
processes, dramatiq's Redis broker (whose dispatch is one Lua script) running jobs with several
worker processes, a script-based rate limiter, and scripts that misbehave while other clients
keep being served."""
import multiprocessing
import threading
import time

import pytest
import redis


def lock_worker(port, rounds, results):
    r = redis.Redis(port=port)
    overlaps = 0
    held = 0
    for _ in range(rounds):
        lock = r.lock("job-42", timeout=5, blocking_timeout=10)
        assert lock.acquire()
        # Inside the lock: this process must be its only holder.
        if r.incr("holders") != 1:
            overlaps += 1
        assert lock.extend(2)
        assert lock.reacquire()
        r.incr("work")
        if r.decr("holders") != 0:
            overlaps += 1
        lock.release()
        held += 1
    results.put((held, overlaps))


def test_lock_contended_by_processes_is_never_held_twice(port):
    processes, rounds = 6, 60
    results = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=lock_worker, args=(port, rounds, results))
               for _ in range(processes)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    assert outcomes == [(rounds, 0)] * processes
    r = redis.Redis(port=port)
    assert r.get("work") == str(processes * rounds).encode()
    assert r.exists("job-42") == 0


def test_lock_release_by_another_token_is_refused(port):
    r = redis.Redis(port=port)
    lock = r.lock("res", timeout=10)
    assert lock.acquire()
    stranger = r.lock("res", timeout=10)
    stranger.local.token = b"not-the-holder"
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        stranger.release()
    assert r.get("res") == lock.local.token
    lock.release()
    assert r.get("res") is None


def dramatiq_worker(port, stop_after):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(host="127.0.0.1", port=port, namespace="jobs")
    dramatiq.set_broker(broker)
    r = redis.Redis(port=port)

    @dramatiq.actor(queue_name="work", max_retries=0)
    def record(n):
        r.incr(f"done:{n}")
        r.incr("done")

    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    deadline = time.time() + stop_after
    while time.time() < deadline and int(r.get("done") or 0) < int(r.get("expected") or 1):
        time.sleep(0.05)
    worker.stop()


def test_dramatiq_jobs_are_each_done_once_by_several_workers(port):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    jobs = 2000
    r = redis.Redis(port=port)
    r.set("expected", jobs)
    broker = RedisBroker(host="127.0.0.1", port=port, namespace="jobs")
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name="work", max_retries=0)
    def record(n):
        pass

    for n in range(jobs):
        record.send(n)
    workers = [multiprocessing.Process(target=dramatiq_worker, args=(port, 120)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=150)
        assert w.exitcode == 0
    assert r.get("done") == str(jobs).encode()
    counts = r.mget([f"done:{n}" for n in range(jobs)])
    assert counts == [b"1"] * jobs


RATE_LIMIT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 1
"""


def test_rate_limiter_script_allows_exactly_the_limit_per_window(port):
    r = redis.Redis(port=port)
    limiter = r.register_script(RATE_LIMIT)
    allowed = [limiter(keys=["rate:robot-7"], args=[1000 + i, 100, 5, f"req-{i}"])
               for i in range(20)]
    assert allowed == [1] * 5 + [0] * 15
    # A window later the oldest requests have left it.
    assert limiter(keys=["rate:robot-7"], args=[1200, 100, 5, "late"]) == 1
    # The script was sent once, then run by its digest.
    assert r.script_exists(limiter.sha) == [True]


def test_script_errors_are_redis_errors_and_the_server_goes_on(port):
    # Filling Lua's memory takes seconds; redis-py's default 5 s timeout would resend the
    # script on a new connection (which then finds the first one busy).
    r = redis.Redis(port=port, socket_timeout=60)
    cases = {
        "return redis.call('nosuchcommand')": "Unknown Redis command called from script",
        "return undefined_global": "Script attempted to access nonexistent global variable",
        "local function f() return f() + 1 end return f()": "stack overflow",
        "return cjson.decode(string.rep('[', 5000))": "Found too many nested data structures",
        "return cjson.decode('{\"a\":')": "Expected value but found T_END",
        "return cmsgpack.unpack('\\220\\255\\255')": "Missing bytes in input.",
        "return struct.unpack('>i4', 'ab')": "data string too short",
        "return redis.call()": "Please specify at least one argument for this redis lib call",
        "return redis.call('get', {})": "Lua redis lib command arguments must be strings or integers",
        "return string.rep('xx', 2^30)": "resulting string too large",
        "local t = {} for i = 1, 1e9 do t[i] = string.rep('y', 1000) .. i end": "not enough memory",
    }
    for script, message in cases.items():
        with pytest.raises(redis.exceptions.ResponseError) as error:
            r.eval(script, 0)
        assert message in str(error.value), (script, str(error.value))
        assert r.ping()
    assert r.eval("return bit.tohex(bit.lshift(1, 100), 100)", 0) == b"00000010"


def test_endless_script_is_busy_for_others_then_killed(port):
    r = redis.Redis(port=port)
    r.config_set("busy-reply-threshold", 100)
    outcome = []

    def endless():
        try:
            redis.Redis(port=port).eval("while true do end", 0)
        except redis.exceptions.ResponseError as e:
            outcome.append(str(e))

    runner = threading.Thread(target=endless)
    runner.start()
    other = redis.Redis(port=port)
    deadline = time.time() + 10
    while True:
        try:
            other.ping()
        except redis.exceptions.BusyLoadingError:
            break
        except redis.exceptions.ResponseError as e:
            assert str(e).startswith("BUSY Redis is busy running a script"), e
            break
        assert time.time() < deadline, "never BUSY"
        time.sleep(0.05)
    assert other.script_kill()
    runner.join(timeout=10)
    assert outcome and "Script killed by user with SCRIPT KILL" in outcome[0]
    assert other.ping()


def test_functions_survive_a_restart_and_run_from_several_clients(start_oxidis, tmp_path):
    port = start_oxidis("--appendonly", "yes")
    r = redis.Redis(port=port)
    code = ("#!lua name=counters\n"
            "redis.register_function('bump', function(keys, args)\n"
            "  return redis.call('INCRBY', keys[1], args[1])\n"
            "end)\n"
            "redis.register_function{function_name='peek', flags={'no-writes'},\n"
            "  callback=function(keys) return redis.call('GET', keys[1]) end}\n")
    assert r.function_load(code) == b"counters"
    clients = [redis.Redis(port=port) for _ in range(4)]
    for _ in range(25):
        for c in clients:
            c.fcall("bump", 1, "hits", 2)
    assert r.fcall_ro("peek", 1, "hits") == b"200"
    with pytest.raises(redis.exceptions.ResponseError, match=r"Can not execute a script with write flag using \*_ro command"):
        r.fcall_ro("bump", 1, "hits", 1)
    r.shutdown(nosave=True)
    port = start_oxidis("--appendonly", "yes")
    r = redis.Redis(port=port)
    assert r.fcall("bump", 1, "hits", 1) == 201
    assert [dict(zip(lib[::2], lib[1::2]))[b"library_name"] for lib in r.function_list()] == [
        b"counters"
    ]
