"""A tiny Docker registry token server: the ``WWW-Authenticate: Bearer realm=...`` flow.

``GET /token?service=S&scope=repository:NAME:pull,push`` with optional Basic credentials
answers ``{"token": JWT, "access_token": JWT, "expires_in": N, "issued_at": ...}``. The JWT is
signed ES256 (default) or RS256 by a key whose self-signed certificate is the registry's
``rootcertbundle``. Its header names the key the way distribution 2.8 looks it up: either
``kid`` (the libtrust key ID of the public key, see :func:`libtrust_key_id`) or an ``x5c``
chain holding the certificate. Matching credentials get the actions they asked for;
anonymous requests get a token with no access (configurable); wrong credentials get 401.
``POST /token`` (OAuth2 form: ``grant_type=password``, with ``access_type=offline`` for a
``refresh_token``, and ``grant_type=refresh_token``, as Docker uses for identity tokens) is
served too. Every request is recorded.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support import markers

if TYPE_CHECKING:
    from tests.support.pki import CertificateAuthority

Algorithm = Literal["ES256", "RS256"]
KeyIdMode = Literal["kid", "x5c"]
# (user or None for anonymous, resource type, resource name, requested actions) → granted
Policy = Callable[[str | None, str, str, tuple[str, ...]], Iterable[str]]


# --------------------------------------------------------------------------------------------
# A threaded loopback HTTP(S) server that can be stopped cleanly


class LoopbackHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on 127.0.0.1 that tracks connections so stop() ends them all,
    with optional TLS (the handshake runs in the connection's own thread)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.tls = tls
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def start(self, name: str) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def stop(self) -> None:
        if self._thread is None:
            return
        self.shutdown()
        self._thread.join(timeout=5)
        self._thread = None
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()


# --------------------------------------------------------------------------------------------
# JWT signing


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """The key ID distribution 2.8 (docker/libtrust) computes for a public key: SHA-256 of
    the DER SubjectPublicKeyInfo, first 240 bits, base32, 12 groups of 4 joined by ':'."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered."""

    method: str
    path: str
    service: str | None
    scopes: tuple[str, ...]
    username: str | None  # the user name presented (even when the password was wrong)
    authenticated: bool
    status: int
    access: tuple[tuple[str, str, tuple[str, ...]], ...]  # (type, name, actions) granted
    at: float = field(default_factory=time.time)


def parse_scope(scope: str) -> tuple[str, str, tuple[str, ...]] | None:
    """``repository:team/app:pull,push`` → ``("repository", "team/app", ("pull", "push"))``."""
    rtype, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    return rtype, name, tuple(a for a in actions.split(",") if a)


class TokenServer:
    """See the module docstring. Start with :func:`start_token_server`."""

    def __init__(
        self,
        directory: Path,
        *,
        service: str = "kferry-test-registry",
        issuer: str = "kferry-test-token-server",
        algorithm: Algorithm = "ES256",
        key_id_mode: KeyIdMode = "kid",
        expires_in: int = 300,
        anonymous_actions: Iterable[str] = (),
        policy: Policy | None = None,
        ca: CertificateAuthority | None = None,
    ) -> None:
        self.directory = directory
        self.service = service
        self.issuer = issuer
        self.algorithm: Algorithm = algorithm
        self.key_id_mode: KeyIdMode = key_id_mode
        self.expires_in = expires_in
        self.anonymous_actions = tuple(anonymous_actions)
        self.policy = policy
        self.users: dict[str, str] = {}
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._fail: list[int] = []  # statuses to answer with for the next requests
        self._refresh: dict[str, str] = {}  # refresh token → user

        directory.mkdir(parents=True, exist_ok=True)
        self._key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if algorithm == "ES256":
            self._key = ec.generate_private_key(ec.SECP256R1())
        else:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        now = datetime.datetime.now(datetime.UTC)
        self.signing_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )
        self.rootcertbundle = directory / "token-signing.crt"
        self.rootcertbundle.write_bytes(self.signing_cert.public_bytes(serialization.Encoding.PEM))
        self.key_id = libtrust_key_id(self._key.public_key())

        tls_context: ssl.SSLContext | None = None
        if ca is not None:
            cert_file, key_file = ca.issue_server_cert(directory, "tokenserver")
            tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls_context.load_cert_chain(cert_file, key_file)
        self.tls = tls_context is not None
        self._server = LoopbackHTTPServer(_make_handler(self), tls_context)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.port}"
        self.realm = f"{self.url}/token"

    # -- control

    def start(self) -> TokenServer:
        self._server.start(f"token-server-{self._server.port}")
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_user(self, username: str, password: str) -> None:
        with self._lock:
            self.users[username] = password

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` token requests with ``status`` and no token."""
        with self._lock:
            self._fail.extend([status] * count)

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    # -- tokens

    def grant(
        self, user: str | None, scopes: Iterable[str]
    ) -> list[tuple[str, str, tuple[str, ...]]]:
        """What ``user`` (None: anonymous) gets for ``scopes``."""
        granted: list[tuple[str, str, tuple[str, ...]]] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            rtype, name, actions = parsed
            if self.policy is not None:
                allowed = tuple(a for a in self.policy(user, rtype, name, actions) if a in actions)
            elif user is not None:
                allowed = actions
            else:
                allowed = tuple(a for a in actions if a in self.anonymous_actions)
            if allowed:
                granted.append((rtype, name, allowed))
        return granted

    def issue(
        self,
        user: str | None,
        access: Iterable[tuple[str, str, Iterable[str]]],
        *,
        expires_in: int | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> str:
        """Sign a token (also usable directly by tests to craft good or bad tokens)."""
        now = int(time.time())
        header: dict[str, Any] = {"typ": "JWT", "alg": self.algorithm}
        if self.key_id_mode == "kid":
            header["kid"] = self.key_id
        else:
            der = self.signing_cert.public_bytes(serialization.Encoding.DER)
            header["x5c"] = [base64.b64encode(der).decode()]
        claims = {
            "iss": issuer or self.issuer,
            "sub": user or "",
            "aud": audience or self.service,
            "exp": now + (self.expires_in if expires_in is None else expires_in),
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": [
                {"type": rtype, "name": name, "actions": list(actions)}
                for rtype, name, actions in access
            ],
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        return signing_input + "." + b64url(self._sign(signing_input.encode()))

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    # -- request handling (called from handler threads)

    def issue_refresh_token(self, username: str) -> str:
        """A refresh token (Docker's "identity token") that stands for ``username``."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = username
        return token

    def _answer(
        self,
        method: str,
        path: str,
        params: dict[str, list[str]],
        basic: tuple[str, str] | None,
        *,
        refresh_token: str | None = None,
        offline: bool = False,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The answer to one token request: Basic credentials (or a form's username and
        password) in ``basic``, or a ``refresh_token`` (OAuth2 refresh grant)."""
        services = params.get("service")
        service = services[0] if services else None
        scopes = tuple(s for value in params.get("scope", []) for s in value.split())
        with self._lock:
            fail = self._fail.pop(0) if self._fail else None
            if refresh_token is not None:
                username = self._refresh.get(refresh_token)
                known = username is not None
            else:
                username = basic[0] if basic else None
                known = basic is not None and self.users.get(basic[0]) == basic[1]

        def record(status: int, authenticated: bool, access: Iterable[Any] = ()) -> None:
            entry = TokenRequest(
                method, path, service, scopes, username, authenticated, status, tuple(access)
            )
            with self._lock:
                self._requests.append(entry)

        if fail is not None:
            record(fail, False)
            return fail, {"errors": [{"code": "UNAVAILABLE", "message": "injected"}]}, {}
        if urlsplit(path).path != "/token":
            record(404, False)
            return 404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]}, {}
        if service is not None and service != self.service:
            record(400, False)
            return 400, {"errors": [{"code": "DENIED", "message": "unknown service"}]}, {}
        if (basic is not None or refresh_token is not None) and not known:
            record(401, False)
            body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            return 401, body, {"WWW-Authenticate": 'Basic realm="kferry-token-server"'}
        user = username if known else None
        access = self.grant(user, scopes)
        token = self.issue(user, access)
        record(200, user is not None, access)
        issued = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        answer: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": issued,
        }
        if offline and user is not None and refresh_token is None:
            answer["refresh_token"] = self.issue_refresh_token(user)
        return 200, answer, {}


def _make_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _basic(self) -> tuple[str, str] | None:
            header = self.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            return user, password

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self) -> None:
            params = parse_qs(urlsplit(self.path).query)
            self._send(*server._answer("GET", self.path, params, self._basic()))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            basic = self._basic()
            grant_type = (form.get("grant_type") or [""])[0]
            offline = (form.get("access_type") or [""])[0] == "offline"
            if grant_type == "password":
                basic = ((form.get("username") or [""])[0], (form.get("password") or [""])[0])
                answer = server._answer("POST", self.path, form, basic, offline=offline)
            elif grant_type == "refresh_token":
                refresh = (form.get("refresh_token") or [""])[0]
                answer = server._answer("POST", self.path, form, None, refresh_token=refresh)
            else:
                answer = 400, {"error": "unsupported_grant_type"}, {}
            self._send(*answer)

    return Handler


def start_token_server(
    directory: Path,
    *,
    users: dict[str, str] | None = None,
    ca: CertificateAuthority | None = None,
    **options: Any,
) -> TokenServer:
    """Start a :class:`TokenServer` (HTTPS with a cert from ``ca`` when given)."""
    markers.started(markers.REGISTRY, "a token server")
    server = TokenServer(directory, ca=ca, **options)
    for username, password in (users or {}).items():
        server.add_user(username, password)
    return server.start()
