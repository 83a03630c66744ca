"""A forwarding (CONNECT) proxy on loopback with a name map of its own: the corporate proxy of
a connected side, which resolves names the client cannot.

Why not Debian's tinyproxy: the only servers a test may reach are on loopback, and kferry (like
Go's httpproxy, which skopeo and containerd use) never sends loopback traffic to a proxy. A
test therefore names its registry ``registry.proxy.test:PORT`` (``.test`` never resolves,
RFC 2606): only a proxy that maps that name to 127.0.0.1 can reach it, and tinyproxy resolves
with the system resolver only. This proxy does exactly what tinyproxy does with a CONNECT
(open the TCP connection, answer ``200``, relay bytes both ways) plus the map, and records
every CONNECT target so that a test can assert what went through it.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from tests.support.processes import free_port


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: ConnectProxy


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        proxy = self.server.proxy
        line = self.rfile.readline(8192).decode("latin-1").strip()
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass
        method, _, rest = line.partition(" ")
        target = rest.split(" ", 1)[0]
        with proxy.lock:
            proxy.requests.append(line)
        if method != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        address = proxy.names.get(host)
        if address is None:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with proxy.lock:
            proxy.connects.append(target)
        try:
            upstream = socket.create_connection((address, int(port)), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        upstream.settimeout(None)
        client = self.connection
        pump = threading.Thread(target=_relay, args=(upstream, client), daemon=True)
        pump.start()
        _relay(client, upstream)
        pump.join(timeout=30)
        upstream.close()


def _relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@dataclass
class ConnectProxy:
    """``http://127.0.0.1:PORT``; ``names`` maps a host name to the address it reaches."""

    names: Mapping[str, str]
    port: int = 0
    requests: list[str] = field(default_factory=list)  # every request line
    connects: list[str] = field(default_factory=list)  # CONNECT targets it tunnelled
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConnectProxy:
        self.port = self.port or free_port()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.proxy = self
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextlib.contextmanager
def connect_proxy(names: Mapping[str, str]) -> Iterator[ConnectProxy]:
    proxy = ConnectProxy(names).start()
    try:
        yield proxy
    finally:
        proxy.stop()
