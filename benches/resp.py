"""RESP for the bench drivers: commands encoded by hand over raw sockets, so the drivers need
nothing beyond Python."""


def command(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def run(sock, commands):
    """Sends the commands in one write and reads one reply line per command (none of them
    may get a multi-line reply)."""
    sock.sendall(b"".join(commands))
    lines = 0
    while lines < len(commands):
        lines += sock.recv(1 << 20).count(b"\r\n")
