"""RESP for the bench drivers: commands encoded by hand over raw sockets, so the drivers need
nothing beyond Python."""


def command(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def run(sock, commands):
    """Sends the commands in one write, then a PING, and reads until the PING's reply: the
    replies before it may span any number of lines."""
    sock.sendall(b"".join(commands) + command("PING"))
    data = b""
    while not data.endswith(b"+PONG\r\n"):
        data += sock.recv(1 << 20)
