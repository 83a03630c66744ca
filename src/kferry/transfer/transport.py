"""How kferry reaches a registry host: TLS, proxies, the connection pool, retries with backoff.

TLS is verified against the system CAs (OpenSSL's compiled-in store, never
``SSL_CERT_FILE``/``SSL_CERT_DIR``) plus every ``--ca-file`` plus, per host, the ``*.crt``
files of ``--cert-dir DIR/HOST[:PORT]/`` (and a client certificate from its ``NAME.cert`` +
``NAME.key`` pair), the layout of containers-certs.d(5) and docker's ``certs.d``; all in a
context of our own, so no environment variable (``SSL_CERT_FILE``, ``SSL_CERT_DIR``,
``REQUESTS_CA_BUNDLE``) changes what is trusted; ``--insecure HOST`` and ``--plain-http
HOST`` apply to the named hosts only.

Proxies: ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` as Go programs read them
(:mod:`kferry.transfer.proxy`; loopback never proxied), chosen per request URL by
:class:`ProxyRouter` below the retries, so token services and blob redirects elsewhere follow
the same rules as the registry itself.

Retries are an httpx transport (:class:`RetryTransport`, httpx's extension point for what
happens to one request) around httpx's own pooled transport: 5xx / 429 (``Retry-After``) /
408 and dropped connections are sent again with exponential backoff and jitter. httpx has no
retry policy of its own (its ``retries`` only repeats failed connects), so this is written here.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from httpcore._sync import http11 as _http11

from kferry.transfer.credentials import Keychain
from kferry.transfer.errors import RegistryError, TransientError
from kferry.transfer.proxy import ProxyConfig, redact

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# A request with this extension set to True has its response body read inside the retries
# (small API answers); others (blob and manifest bodies) are streamed by the caller.
BUFFER = "kferry.buffer"

# httpcore reads responses 64 KiB at a time; every read is a round of Python event handling.
# Blob bodies are hundreds of MB, so read them in 1 MiB pieces (measured: bench/mirror.py).
if isinstance(getattr(_http11.HTTP11Connection, "READ_NUM_BYTES", None), int):
    _http11.HTTP11Connection.READ_NUM_BYTES = max(_http11.HTTP11Connection.READ_NUM_BYTES, 1 << 20)


@dataclass(frozen=True)
class Options:
    """How to reach registries: TLS, plain HTTP, credentials, retries."""

    keychain: Keychain = field(default_factory=Keychain)
    ca_file: Path | None = None
    ca_files: tuple[Path, ...] = ()  # more --ca-file (all trusted for every host)
    cert_dirs: tuple[Path, ...] = ()  # --cert-dir: DIR/HOST[:PORT]/*.crt, *.cert + *.key
    proxies: ProxyConfig | None = None  # None: from the environment
    insecure: frozenset[str] = frozenset()
    plain_http: frozenset[str] = frozenset()
    retries: int = 6
    backoff: float = 0.5
    max_wait: float = 60.0
    timeout: float = 120.0
    connections: int = 16
    chunk_size: int = 64 << 20  # blobs larger than this are sent in PATCH chunks of this size


@dataclass(frozen=True, slots=True)
class HostTrust:
    """What one host's TLS trusts beyond the system CAs, and the client certificate it shows."""

    cas: tuple[Path, ...] = ()
    client_certs: tuple[tuple[Path, Path], ...] = ()  # (NAME.cert, NAME.key)


def host_cert_dir(directory: Path, host: str) -> Path:
    """``DIR/HOST[:PORT]``: the port written exactly as in the image reference
    (containers-certs.d(5): ``registry.example`` and ``registry.example:443`` differ)."""
    return directory / host


def read_cert_dir(directory: Path) -> HostTrust:
    """``*.crt`` are CAs; ``NAME.cert`` with ``NAME.key`` a client certificate (a ``.cert``
    without its ``.key``, or the reverse, is an error, as in containers/image@v5.36.1
    pkg/tlsclientconfig/tlsclientconfig.go:20 SetupCertificates, :61 and :74)."""
    cas = tuple(sorted(directory.glob("*.crt")))
    certs = {p.stem: p for p in directory.glob("*.cert")}
    keys = {p.stem: p for p in directory.glob("*.key")}
    for stem in sorted(set(certs) ^ set(keys)):
        have, want = (certs[stem], ".key") if stem in certs else (keys[stem], ".cert")
        raise RegistryError(
            f"--cert-dir {directory}: {have.name} has no {stem}{want} beside it "
            "(a client certificate needs both files)"
        )
    return HostTrust(cas, tuple((certs[s], keys[s]) for s in sorted(certs)))


def host_trust(host: str, options: Options) -> HostTrust:
    cas = ([options.ca_file] if options.ca_file is not None else []) + list(options.ca_files)
    clients: list[tuple[Path, Path]] = []
    for directory in options.cert_dirs:
        here = host_cert_dir(directory, host)
        if here.is_dir():
            found = read_cert_dir(here)
            cas += found.cas
            clients += found.client_certs
    return HostTrust(tuple(dict.fromkeys(cas)), tuple(clients))


def _file_state(path: Path) -> tuple[str, int, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (str(path), -1, -1, -1)  # loading it says what is wrong (not cached then)
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns)


# Contexts built, by what they trust (each file with its inode, size and mtime, so a file
# changed in place is read again). Loading the system CAs costs 0.05-0.2 s of CPU each time,
# and a run builds a client per host for the preflight, its reachability probe and the copy:
# one context per trust serves them all (an SSLContext is shared safely by connections and
# threads; it is not changed after it is built).
_CONTEXTS: dict[tuple[object, ...], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def host_ssl_context(host: str, options: Options) -> ssl.SSLContext:
    """The TLS context for one registry host: system CAs, ``--ca-file``s, its cert dir
    (one per distinct trust and process, see ``_CONTEXTS``)."""
    trust = host_trust(host, options)
    key = (
        tuple(_file_state(ca) for ca in trust.cas),
        tuple((_file_state(c), _file_state(k)) for c, k in trust.client_certs[:1]),
    )
    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get(key)
        if ctx is None:
            ctx = _CONTEXTS[key] = _build_host_context(trust, options)
        return ctx


def _build_host_context(trust: HostTrust, options: Options) -> ssl.SSLContext:
    ctx = ssl_context(None)
    for ca in trust.cas:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            flag = "--ca-file" if ca in (options.ca_file, *options.ca_files) else "--cert-dir"
            raise RegistryError(f"{flag} {ca}: cannot load CA certificates: {exc}") from None
    for cert, key in trust.client_certs[:1]:  # one identity per host; the first by name
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise RegistryError(
                f"--cert-dir {cert.parent}: cannot load client certificate {cert.name} "
                f"with {key.name}: {exc}"
            ) from None
    return ctx


def check_ca_file(ca_file: Path) -> None:
    """``ca_file`` loads as CA certificates (checked alone: the system CAs are not read)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise RegistryError(f"--ca-file {ca_file}: cannot load CA certificates: {exc}") from None


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """System CAs plus the private CA; built by us so environment variables cannot swap it.

    ``ssl.create_default_context()`` loads ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when they are
    set (OpenSSL's ``X509_get_default_cert_file_env``); the compiled-in paths are loaded here
    instead, whatever the environment says.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    paths = ssl.get_default_verify_paths()
    cafile, capath = paths.openssl_cafile, paths.openssl_capath
    with contextlib.suppress(OSError, ssl.SSLError):
        if cafile and Path(cafile).is_file():
            ctx.load_verify_locations(cafile=cafile)
    with contextlib.suppress(OSError, ssl.SSLError):
        if capath and Path(capath).is_dir():
            ctx.load_verify_locations(capath=capath)
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise RegistryError(
                f"--ca-file {ca_file}: cannot load CA certificates: {exc}"
            ) from None
    return ctx


def host_matches(host: str, names: frozenset[str]) -> bool:
    return host in names or host.split(":")[0] in names


def cause_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


class RetryTransport(httpx.BaseTransport):
    """Sends a request again on 5xx/429/408 and dropped connections, with backoff.

    Only requests whose body can be sent again (none, or bytes) are retried; a streamed
    upload body is sent once, and its caller starts the blob again (a fresh upload session).
    A TLS failure is never retried (it will not heal), except a transient alert (tls_final).
    """

    def __init__(self, inner: httpx.BaseTransport, options: Options) -> None:
        self.inner = inner
        self.options = options

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        retries = self.options.retries if isinstance(request.stream, httpx.ByteStream) else 0
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                resp = self.inner.handle_request(request)
                if request.extensions.get(BUFFER):
                    resp.read()
            except httpx.TransportError as exc:
                if last or tls_final(exc) or unknown_name(exc):
                    raise
                self.pause(request, attempt, retries, type(exc).__name__, None)
                continue
            if resp.status_code in RETRY_STATUS and not last:
                wait = retry_after(resp)
                resp.close()
                self.pause(request, attempt, retries, f"HTTP {resp.status_code}", wait)
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def pause(
        self,
        request: httpx.Request,
        attempt: int,
        retries: int,
        reason: str,
        retry_after: float | None,
    ) -> None:
        """Wait before the next attempt, and say so under ``-v`` (httpx logs only the last
        response of a request: the retries happen inside this transport, below it)."""
        wait = self.delay(attempt, retry_after)
        log.info(
            "retrying %s %s after %s, in %.1fs (attempt %d of %d)",
            request.method,
            request.url,
            reason,
            wait,
            attempt + 2,
            retries + 1,
        )
        time.sleep(wait)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        return backoff_delay(attempt, retry_after, self.options.backoff, self.options.max_wait)

    def close(self) -> None:
        self.inner.close()


def backoff_delay(
    attempt: int, retry_after: float | None, backoff: float, max_wait: float
) -> float:
    """Seconds to wait before try ``attempt + 1``: what the server said (``Retry-After``), or
    exponential backoff with jitter; never more than ``max_wait``."""
    if retry_after is not None:
        return min(retry_after, max_wait)
    base = backoff * (2**attempt)
    return float(min(base + random.uniform(0, base / 2), max_wait))


class ProxyRouter(httpx.BaseTransport):
    """Sends each request directly or through the proxy its URL calls for (one pooled
    transport per route). httpx's ``mounts`` route by URL pattern only, which cannot say
    "every loopback address" or a ``NO_PROXY`` CIDR, hence this small router."""

    def __init__(self, proxies: ProxyConfig, make: Callable[[str | None], httpx.HTTPTransport]):
        self.proxies = proxies
        self.make = make
        self._lock = threading.Lock()
        self._routes: dict[str | None, httpx.HTTPTransport] = {}

    def route(self, url: str) -> tuple[httpx.HTTPTransport, str | None]:
        proxy = self.proxies.proxy_for(url)
        with self._lock:
            if proxy not in self._routes:
                if proxy is not None:
                    log.debug("requests to %s go through proxy %s", url, redact(proxy))
                self._routes[proxy] = self.make(proxy)
            return self._routes[proxy], proxy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport, proxy = self.route(str(request.url))
        try:
            return transport.handle_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if proxy is None:
                raise
            # the message names the proxy (a refused connection is the proxy's, not the
            # registry's); the cause chain keeps TLS and DNS causes for the checks above
            raise httpx.ProxyError(f"through {redact(proxy)}: {exc}", request=request) from exc

    def close(self) -> None:
        with self._lock:
            routes, self._routes = list(self._routes.values()), {}
        for transport in routes:
            transport.close()


def client(host: str, options: Options) -> httpx.Client:
    """The pooled, retrying client for one registry host (TLS per ``--insecure``,
    ``--ca-file`` and ``--cert-dir``; proxies per ``HTTPS_PROXY``/``NO_PROXY``)."""
    verify: ssl.SSLContext | bool = (
        False if host_matches(host, options.insecure) else host_ssl_context(host, options)
    )
    limits = httpx.Limits(
        max_connections=options.connections,
        max_keepalive_connections=options.connections,
    )

    def transport(proxy: str | None) -> httpx.HTTPTransport:
        return httpx.HTTPTransport(
            verify=verify,
            limits=limits,
            trust_env=False,
            proxy=httpx.Proxy(proxy) if proxy is not None else None,
        )

    proxies = options.proxies if options.proxies is not None else ProxyConfig.from_env()
    inner: httpx.BaseTransport = (
        ProxyRouter(proxies, transport) if proxies.active else transport(None)
    )
    return httpx.Client(
        transport=RetryTransport(inner, options),
        timeout=httpx.Timeout(options.timeout, connect=30.0),
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": "kferry"},
    )


# TLS alerts that a server sends when a connection went wrong on the wire, not because of
# trust or configuration: the next connection usually succeeds (seen once in CI from the
# loopback docker-registry: "sslv3 alert unexpected message" on a blob HEAD).
_TRANSIENT_TLS = ("ALERT_UNEXPECTED_MESSAGE", "ALERT_BAD_RECORD_MAC", "DECRYPTION_FAILED")


def tls_final(exc: BaseException) -> bool:
    """A TLS failure that will not heal by itself (untrusted certificate, plain HTTP on the
    port, protocol mismatch): never retried. A transient alert is retried like a reset."""
    return any(
        isinstance(e, ssl.SSLError)
        and (
            isinstance(e, ssl.SSLCertVerificationError)
            or not any(reason in str(e) for reason in _TRANSIENT_TLS)
        )
        for e in cause_chain(exc)
    )


def unknown_name(exc: BaseException) -> bool:
    """The resolver says the name does not exist (``EAI_NONAME``; not ``EAI_AGAIN``, a
    resolver that did not answer): trying again will not make it exist."""
    return any(
        isinstance(e, socket.gaierror) and e.errno == socket.EAI_NONAME for e in cause_chain(exc)
    )


def network_error(host: str, exc: BaseException, what: str) -> RegistryError:
    """A failed request as an error that says what to do (TLS trouble names the flags)."""
    if unknown_name(exc) and not isinstance(exc, httpx.ProxyError):
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return RegistryError(
            f"{host}: the name {name} is not known here (DNS); check the spelling, or if this "
            "side reaches registries through a proxy, set HTTPS_PROXY (and NO_PROXY for the "
            "hosts it must not handle)"
        )
    for e in cause_chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return RegistryError(
                f"{host}: TLS certificate not trusted ({e.verify_message or e}); "
                "if the registry uses a private CA, pass it with --ca-file FILE or "
                f"--cert-dir DIR holding DIR/{host}/ca.crt "
                f"(or --insecure {host} to skip verification)"
            )
        if isinstance(e, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(e):
            return RegistryError(
                f"{host}: answered plain HTTP to a TLS connection; if it really serves "
                f"plain HTTP, say so with --plain-http {host}"
            )
    if isinstance(exc, httpx.ProxyError):
        return TransientError(
            f"{host}: {what}: the proxy did not connect us ({exc}); check HTTPS_PROXY / "
            f"HTTP_PROXY, or list {host} in NO_PROXY if it must be reached directly"
        )
    if isinstance(exc, (httpx.TransportError, httpx.StreamError)):
        return TransientError(f"{host}: {what}: {type(exc).__name__}: {exc}")
    return RegistryError(f"{host}: {what}: {type(exc).__name__}: {exc}")
