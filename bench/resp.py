"""bench/resp.py - the minimal Redis client of the bench scripts (mem_breakdown.py,
mem_whatif_keys.py): RESP2 over a TCP or unix socket, no client library needed on the
machine. cmd() sends one command and returns its reply: bytes for a bulk string, str for
a status, int, None, or a list; an error reply raises RuntimeError."""
import socket


class Redis:
    def __init__(self, host, port, unix=None):
        if unix:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.connect(unix)
        else:
            self.s = socket.create_connection((host, port))
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        return self.read()

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)
