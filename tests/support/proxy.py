"""FlakyProxy: a plain-HTTP reverse proxy on loopback in front of a real registry that can be
told to misbehave.

Everything is forwarded (bodies streamed both ways, headers kept, ``Location`` rewritten to
the proxy's address, ``WWW-Authenticate`` untouched so token realms still point at the token
server). Faults, each optionally limited to a method and a path regex:

- :meth:`FlakyProxy.fail_next`: answer the next K matching requests with a status (429 with
  ``Retry-After`` by default) without forwarding them;
- :meth:`FlakyProxy.fail_for`: the same for every matching request during T seconds;
- :meth:`FlakyProxy.drop_next`: forward, but cut the connection in the middle of the response
  body (after ``after_bytes`` bytes, or half the body if it is shorter);
- :meth:`FlakyProxy.drop_upload_next`: read part of a request body, then cut the connection
  without forwarding;
- :attr:`FlakyProxy.referrers_page_size`: answer the referrers API (``GET /v2/<name>/
  referrers/<digest>``) in pages of that many descriptors linked by ``Link: <...>;
  rel="next"``, as the distribution spec lets a registry do (the upstream list is fetched
  whole and cut up here: no registry of the tests pages it by itself).

Every request is recorded (:attr:`FlakyProxy.requests`, :meth:`FlakyProxy.status_counts`).
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx

from tests.support.tokenserver import LoopbackHTTPServer

if TYPE_CHECKING:
    from tests.support.registry import Registry

FaultKind = Literal["status", "drop_response", "drop_request"]
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "host",
    }
)
_ERROR_CODES = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE", 502: "UNAVAILABLE", 500: "UNKNOWN"}
_CHUNK = 64 * 1024
_REFERRERS = re.compile(r"^/v2/.+/referrers/[^/?]+(\?|$)")


@dataclass
class _Fault:
    kind: FaultKind
    status: int = 0
    retry_after: int | None = None
    remaining: int | None = None  # None: unlimited until ``until``
    until: float | None = None  # time.monotonic() deadline
    method: str | None = None
    path: re.Pattern[str] | None = None
    after_bytes: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass(frozen=True)
class ProxiedRequest:
    """One request the proxy handled. ``status`` is 0 when no status line was sent;
    ``fault`` names the injected fault, if any; ``body_bytes`` counts response body bytes."""

    method: str
    path: str
    status: int
    fault: FaultKind | None
    body_bytes: int
    at: float


class FlakyProxy:
    """See the module docstring. Starts on construction; :meth:`stop` ends it."""

    def __init__(
        self, upstream_url: str, ca_file: Path | None = None, *, timeout: float = 60.0
    ) -> None:
        self.upstream = upstream_url.rstrip("/")
        self.upstream_host = urlsplit(self.upstream).netloc
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
        )
        self._client = httpx.Client(
            verify=verify,
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=32),
        )
        # No default headers (Accept: */*, User-Agent, ...): forward exactly what came in.
        self._client.headers.clear()
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._requests: list[ProxiedRequest] = []
        self.bytes_per_second: float | None = None  # throttle response bodies when set
        # Where relayed Location headers point (default: this proxy): a lying registry that
        # sends uploads elsewhere.
        self.location_base: str | None = None
        self.with_authorization: list[tuple[str, str]] = []  # (method, path) that carried one
        self.referrers_page_size: int | None = None
        self._server = LoopbackHTTPServer(_make_handler(self))
        self.host = f"127.0.0.1:{self._server.port}"
        self.url = f"http://{self.host}"
        self._server.start(f"flaky-proxy-{self._server.port}")

    # -- life cycle

    def stop(self) -> None:
        self._server.stop()
        self._client.close()

    def __enter__(self) -> FlakyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ref(self, repo: str, tag_or_digest: str = "latest") -> str:
        sep = "@" if ":" in tag_or_digest else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    # -- faults

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Forget every fault not yet used up: from now on everything is forwarded."""
        with self._lock:
            self._faults = []

    @staticmethod
    def _pattern(path: str | None) -> re.Pattern[str] | None:
        return re.compile(path) if path is not None else None

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (not forwarded).
        ``retry_after`` (seconds) is sent as ``Retry-After`` unless None."""
        self._add(_Fault("status", status, retry_after, count, None, method, self._pattern(path)))

    def fail_for(
        self,
        seconds: float,
        *,
        status: int = 503,
        retry_after: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer every matching request with ``status`` for the next ``seconds``."""
        until = time.monotonic() + seconds
        self._add(_Fault("status", status, retry_after, None, until, method, self._pattern(path)))

    def drop_next(
        self,
        count: int = 1,
        *,
        after_bytes: int = 1024,
        method: str | None = "GET",
        path: str | None = r"/blobs/sha256:",
    ) -> None:
        """Forward the next ``count`` matching requests that get a 200/206 with a body, but
        close the connection after ``after_bytes`` body bytes (half the body if shorter)."""
        pattern = self._pattern(path)
        self._add(_Fault("drop_response", 0, None, count, None, method, pattern, after_bytes))

    def drop_upload_next(
        self,
        count: int = 1,
        *,
        after_bytes: int = 1024,
        method: str | None = None,
        path: str | None = r"/blobs/uploads/",
    ) -> None:
        """For the next ``count`` matching requests with a body: read up to ``after_bytes`` of
        it, then close the connection. Nothing is forwarded."""
        pattern = self._pattern(path)
        self._add(_Fault("drop_request", 0, None, count, None, method, pattern, after_bytes))

    def _take(self, kinds: tuple[FaultKind, ...], method: str, path: str) -> _Fault | None:
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.until is None or f.until > now]
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # -- statistics

    def _record(
        self, method: str, path: str, status: int, fault: FaultKind | None, body_bytes: int
    ) -> None:
        entry = ProxiedRequest(method, path, status, fault, body_bytes, time.time())
        with self._lock:
            self._requests.append(entry)

    @property
    def requests(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self._requests)

    def status_counts(self) -> Counter[int]:
        """How many requests got each status (0: connection cut before a status line)."""
        with self._lock:
            return Counter(r.status for r in self._requests)

    def injected(self) -> int:
        """How many requests met an injected fault."""
        with self._lock:
            return sum(1 for r in self._requests if r.fault is not None)


# What the ``make_flaky_proxy`` fixture returns: a FlakyProxy in front of a registry.
ProxyFactory = Callable[["Registry"], FlakyProxy]


def _make_handler(proxy: FlakyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # Every method goes through the same path.
        def do_GET(self) -> None:
            self._proxy()

        do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

        # -- request body

        def _body(self) -> Iterator[bytes] | None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            length = self.headers.get("Content-Length")
            if length is None:
                return None
            return self._read_length(int(length))

        def _read_length(self, length: int) -> Iterator[bytes]:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(_CHUNK, remaining))
                if not chunk:
                    raise ConnectionError("client closed mid-body")
                remaining -= len(chunk)
                yield chunk

        def _read_chunked(self) -> Iterator[bytes]:
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("client closed mid-body")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield from self._read_length(size)
                self.rfile.readline(65537)  # CRLF after the chunk

        # -- responses

        def _cut(self) -> None:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _send_status(self, status: int, retry_after: int | None) -> None:
            code = _ERROR_CODES.get(status, "UNKNOWN")
            body = json.dumps(
                {"errors": [{"code": code, "message": f"injected {status}", "detail": None}]}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _proxy(self) -> None:
            method, path = self.command, self.path
            if self.headers.get("Authorization"):
                with proxy._lock:
                    proxy.with_authorization.append((method, path))
            body = self._body()
            fault = proxy._take(("status", "drop_request"), method, path)
            if fault is not None and fault.kind == "drop_request" and body is None:
                fault = None  # nothing to cut; forward normally
            try:
                if fault is not None and fault.kind == "status":
                    for _ in body or ():
                        pass
                    self._send_status(fault.status, fault.retry_after)
                    proxy._record(method, path, fault.status, "status", 0)
                    return
                if fault is not None and fault.kind == "drop_request":
                    assert body is not None
                    read = 0
                    for chunk in body:
                        read += len(chunk)
                        if read >= fault.after_bytes:
                            break
                    self._cut()
                    proxy._record(method, path, 0, "drop_request", 0)
                    return
                if proxy.referrers_page_size and method == "GET" and _REFERRERS.match(path):
                    self._referrers_page(path, proxy.referrers_page_size)
                    return
                self._forward(method, path, body)
            except (ConnectionError, OSError, ValueError, httpx.HTTPError):
                self._cut()
                proxy._record(method, path, 0, None, 0)

        def _referrers_page(self, path: str, size: int) -> None:
            """Page ``?page=N`` (default 0) of the upstream referrers list."""
            plain, _, query = path.partition("?")
            page = int(query[len("page=") :]) if query.startswith("page=") else 0
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
            upstream = proxy._client.get(proxy.upstream + plain, headers=headers)
            if upstream.status_code != 200:
                self._send_status(upstream.status_code, None)
                proxy._record("GET", path, upstream.status_code, None, 0)
                return
            doc = upstream.json()
            # Sorted: the upstream's order may change between requests (go-containerregistry
            # lists a Go map), and pages of one list must not overlap.
            listed = sorted(doc.get("manifests") or [], key=lambda m: str(m.get("digest")))
            doc["manifests"] = listed[page * size : (page + 1) * size]
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", upstream.headers.get("Content-Type", ""))
            self.send_header("Content-Length", str(len(body)))
            if (page + 1) * size < len(listed):
                self.send_header("Link", f'<{plain}?page={page + 1}>; rel="next"')
            self.end_headers()
            self.wfile.write(body)
            proxy._record("GET", path, 200, None, len(body))

        def _forward(self, method: str, path: str, body: Iterator[bytes] | None) -> None:
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
            headers.append(("Host", proxy.upstream_host))
            request = proxy._client.build_request(
                method, proxy.upstream + path, headers=headers, content=body
            )
            try:
                response = proxy._client.send(request, stream=True)
            except httpx.HTTPError:
                self.close_connection = True
                self._send_status(502, None)
                proxy._record(method, path, 502, None, 0)
                return
            try:
                self._relay(method, path, response)
            finally:
                response.close()

        def _relay(self, method: str, path: str, response: httpx.Response) -> None:
            status = response.status_code
            self.send_response_only(status, response.reason_phrase)
            for name, value in response.headers.multi_items():
                lname = name.lower()
                if lname in HOP_BY_HOP:
                    continue
                if lname == "location" and value.startswith(proxy.upstream):
                    value = (proxy.location_base or proxy.url) + value[len(proxy.upstream) :]
                self.send_header(name, value)
            length_header = response.headers.get("Content-Length")
            no_body = method == "HEAD" or status in (204, 304) or status < 200
            if no_body:
                self.end_headers()
                proxy._record(method, path, status, None, 0)
                return
            chunked = length_header is None
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            limit: int | None = None
            fault: _Fault | None = None
            if status in (200, 206):
                fault = proxy._take(("drop_response",), method, path)
                if fault is not None:
                    length = int(length_header) if length_header is not None else None
                    limit = fault.after_bytes
                    if length is not None and length <= limit:
                        limit = length // 2
            sent = 0
            for chunk in response.iter_raw(_CHUNK):
                if limit is not None and sent + len(chunk) >= limit:
                    chunk = chunk[: limit - sent]
                    self._write(chunk, chunked)
                    sent += len(chunk)
                    self._cut()
                    proxy._record(method, path, status, "drop_response", sent)
                    return
                self._write(chunk, chunked)
                sent += len(chunk)
                if proxy.bytes_per_second:
                    time.sleep(len(chunk) / proxy.bytes_per_second)
            if limit is not None:  # body ended before the limit: cut anyway
                self._cut()
                proxy._record(method, path, status, "drop_response", sent)
                return
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            proxy._record(method, path, status, None, sent)

        def _write(self, chunk: bytes, chunked: bool) -> None:
            if not chunk:
                return
            if chunked:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            else:
                self.wfile.write(chunk)

    return Handler
