"""TLS on tls-port with redis-py (ssl=True) and redis-cli --tls, using certificates made here
with openssl: a CA, a server certificate for 127.0.0.1, a client certificate, an X.509 v1
server certificate (no extensions) and the server key encrypted with a password."""
import socket
import ssl
import subprocess

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import free_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-sha256", "-days", "2",
            "-subj", "/O=Oxidis Test/CN=CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-sha256",
                "-subj", f"/O=Oxidis Test/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
                "-out", f"{name}.crt", cwd=d)
    # Without -extfile, `openssl x509 -req` makes a version 1 certificate; OpenSSL serves those.
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "2",
            "-sha256", "-out", "server-v1.crt", cwd=d)
    openssl("rsa", "-in", "server.key", "-aes256", "-passout", "pass:robot-42",
            "-out", "server-encrypted.key", cwd=d)
    return d


def start_tls(start_oxidis, certs, *extra):
    tls_port = free_port()
    port = start_oxidis("--tls-port", str(tls_port), "--tls-cert-file", str(certs / "server.crt"),
                        "--tls-key-file", str(certs / "server.key"),
                        "--tls-ca-cert-file", str(certs / "ca.crt"), *extra)
    return port, tls_port


def test_redis_py_and_redis_cli_over_tls(start_oxidis, certs):
    port, tls_port = start_tls(start_oxidis, certs)
    r = redis.Redis(host="127.0.0.1", port=tls_port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"),
                    ssl_certfile=str(certs / "client.crt"), ssl_keyfile=str(certs / "client.key"))
    assert r.set("robot:1", '{"x": 1}') is True
    assert r.get("robot:1") == b'{"x": 1}'
    assert r.rpush("jobs", *range(1000)) == 1000
    assert len(r.lrange("jobs", 0, -1)) == 1000
    # The same data is on the plain port.
    assert redis.Redis(host="127.0.0.1", port=port).get("robot:1") == b'{"x": 1}'
    cli = subprocess.run(["redis-cli", "--tls", "--cacert", str(certs / "ca.crt"),
                          "--cert", str(certs / "client.crt"), "--key", str(certs / "client.key"),
                          "-p", str(tls_port), "GET", "robot:1"],
                         capture_output=True, text=True, check=True)
    assert cli.stdout == '{"x": 1}\n'


def test_client_without_certificate_is_refused(start_oxidis, certs):
    port, tls_port = start_tls(start_oxidis, certs)
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"PING\r\n")
                tls.recv(100)
    # Plain text on the TLS port is not a handshake either: closed without a byte, as Redis does.
    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(100) == b""
    assert redis.Redis(host="127.0.0.1", port=port).ping() is True


def test_tls_auth_clients_no(start_oxidis, certs):
    _, tls_port = start_tls(start_oxidis, certs, "--tls-auth-clients", "no")
    r = redis.Redis(host="127.0.0.1", port=tls_port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"))
    assert r.ping() is True
    assert r.client_info()["addr"].startswith("127.0.0.1:")


def test_config_set_changes_tls_for_new_connections(start_oxidis, certs):
    port, tls_port = start_tls(start_oxidis, certs)
    admin = redis.Redis(host="127.0.0.1", port=port)
    without_cert = dict(host="127.0.0.1", port=tls_port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"),
                        retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(**without_cert).ping()
    assert admin.config_set("tls-auth-clients", "no") is True
    assert redis.Redis(**without_cert).ping() is True
    # A certificate that cannot be loaded is refused, and the settings stay as they were.
    with pytest.raises(redis.ResponseError) as error:
        admin.config_set("tls-cert-file", str(certs / "missing.crt"))
    assert str(error.value) == ("CONFIG SET failed (possibly related to argument 'tls-cert-file') "
                                "- Unable to update TLS configuration. Check server logs.")
    assert admin.config_get("tls-cert-file") == {"tls-cert-file": str(certs / "server.crt")}
    assert redis.Redis(**without_cert).ping() is True


def tls_client(certs, tls_port, **extra):
    return redis.Redis(host="127.0.0.1", port=tls_port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"),
                       ssl_certfile=str(certs / "client.crt"),
                       ssl_keyfile=str(certs / "client.key"), retry=Retry(NoBackoff(), 0), **extra)


def test_version_1_certificate_is_served(start_oxidis, certs):
    _, tls_port = start_tls(start_oxidis, certs, "--tls-cert-file", str(certs / "server-v1.crt"))
    # The client checks the CA's signature and the name; it does not need a hostname here.
    r = tls_client(certs, tls_port, ssl_check_hostname=False)
    assert r.ping() is True
    assert r.connection_pool.get_connection()._sock.getpeercert()["version"] == 1


def test_encrypted_key_needs_tls_key_file_pass(start_oxidis, certs):
    port, tls_port = start_tls(start_oxidis, certs)
    admin = redis.Redis(host="127.0.0.1", port=port)
    with pytest.raises(redis.ResponseError) as error:
        admin.config_set("tls-key-file", str(certs / "server-encrypted.key"))
    assert str(error.value) == ("CONFIG SET failed (possibly related to argument 'tls-key-file') "
                                "- Unable to update TLS configuration. Check server logs.")
    assert admin.config_set("tls-key-file-pass", "wrong") is True
    with pytest.raises(redis.ResponseError):
        admin.config_set("tls-key-file", str(certs / "server-encrypted.key"))
    assert admin.config_set("tls-key-file-pass", "robot-42") is True
    assert admin.config_set("tls-key-file", str(certs / "server-encrypted.key")) is True
    assert tls_client(certs, tls_port).ping() is True
    # At start, from the arguments, too.
    _, tls_port = start_tls(start_oxidis, certs, "--tls-key-file", str(certs / "server-encrypted.key"),
                            "--tls-key-file-pass", "robot-42")
    assert tls_client(certs, tls_port).ping() is True


def test_config_set_moves_the_ports(start_oxidis, certs):
    port, tls_port = start_tls(start_oxidis, certs)
    admin = tls_client(certs, tls_port)
    plain = dict(host="127.0.0.1", retry=Retry(NoBackoff(), 0))
    # The TLS port is closed, and the plain port moves to where it was.
    assert admin.config_set("tls-port", 0) is True
    with pytest.raises(redis.exceptions.ConnectionError):
        tls_client(certs, tls_port).ping()
    assert admin.config_set("port", tls_port) is True
    assert redis.Redis(port=tls_port, **plain).ping() is True
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(port=port, **plain).ping()
    assert admin.config_get("port") == {"port": str(tls_port)}
    # A port that is taken is refused, and the server keeps listening where it was.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(redis.ResponseError) as error:
            admin.config_set("port", taken.getsockname()[1])
    assert str(error.value) == ("CONFIG SET failed (possibly related to argument 'port') - "
                                "Unable to listen on this port. Check server logs.")
    assert admin.config_get("port") == {"port": str(tls_port)}
    assert redis.Redis(port=tls_port, **plain).ping() is True
    # And back: plain off, TLS on the same port again. The admin connection stays up throughout.
    assert admin.config_set("port", 0) is True
    assert admin.config_set("tls-port", tls_port) is True
    assert tls_client(certs, tls_port).ping() is True
    assert admin.ping() is True
