"""Shared fixtures: a fresh oxidis binary on a free port for each test."""
import itertools
import os
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, "target", "release", "oxidis")


_next_port = itertools.count()


def free_port():
    """A port below Linux's ephemeral range (32768 and up), in a block chosen by process id,
    so no client socket can hold it or be connected to itself on it."""
    block = 21000 + (os.getpid() % 90) * 120
    while True:
        port = block + next(_next_port) % 120
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


@pytest.fixture
def port(tmp_path):
    port = free_port()
    # OXIDIS_ARGS adds server arguments, e.g. "--io-threads 2" to run these tests multithreaded.
    extra = os.environ.get("OXIDIS_ARGS", "").split()
    # Its own directory, so no dump or AOF leaks between servers.
    proc = subprocess.Popen([BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def start_oxidis(tmp_path):
    """Starts oxidis with extra arguments (a password, an ACL file ...) in its own directory;
    returns its port. Every server started is stopped after the test."""
    started = []

    def start(*args):
        port = free_port()
        proc = subprocess.Popen([BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--dir", str(tmp_path), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(proc)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return port
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"oxidis did not start: {proc.stderr.read().decode()}")
                time.sleep(0.02)

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)
