"""The registry protocol (OCI distribution spec) over httpx: manifests, blobs, uploads, auth.

What httpx does not do for us and is written here: the ``WWW-Authenticate`` challenge/token
flow with per-scope token caching, cross-repository blob mounts, chunked uploads, and retries
with backoff on 5xx / 429 (``Retry-After``) / dropped connections. TLS is verified against the
system CAs (OpenSSL's compiled-in store, never ``SSL_CERT_FILE``/``SSL_CERT_DIR``) plus
``--ca-file``, in a context of our own, so no environment variable (``SSL_CERT_FILE``,
``SSL_CERT_DIR``, ``REQUESTS_CA_BUNDLE``) changes what is trusted; ``--insecure HOST`` and
``--plain-http HOST`` apply to the named hosts only.

Credentials (Basic, bearer tokens, refresh tokens) go only over TLS, or over plain HTTP to a
host that ``--plain-http`` names: a token realm, an upload ``Location`` or a redirect that
points elsewhere gets no credentials (:meth:`Registry.may_send_credentials`).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx
from httpcore._sync import http11 as _http11

from kferry.errors import KferryError
from kferry.transfer.auth import ANONYMOUS, Challenge, Credential, Keychain, parse_challenge
from kferry.transfer.media import ACCEPT, Manifest, parse_manifest

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# distribution refuses manifests above 4 MiB (registry/handlers/manifests.go maxManifestBodySize);
# kferry reads no more than that from any registry or bundle.
MAX_MANIFEST_BYTES = 4 << 20
MAX_TOKEN_RESPONSE_BYTES = 1 << 20

# httpcore reads responses 64 KiB at a time; every read is a round of Python event handling.
# Blob bodies are hundreds of MB, so read them in 1 MiB pieces (measured: bench/mirror.py).
if isinstance(getattr(_http11.HTTP11Connection, "READ_NUM_BYTES", None), int):
    _http11.HTTP11Connection.READ_NUM_BYTES = max(_http11.HTTP11Connection.READ_NUM_BYTES, 1 << 20)
DOCKER_HUB_API = "registry-1.docker.io"


class RegistryError(KferryError):
    """A registry or network failure, with what to do about it."""

    exit_code = 1


class AuthError(RegistryError):
    pass


class NotFound(RegistryError):
    pass


class DigestMismatch(RegistryError):
    pass


class TransientError(RegistryError):
    """A dropped connection, 5xx/429 or an expired token during an upload: the operation may
    succeed if started again (after ``retry_after`` seconds when the server said so)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Options:
    """How to reach registries: TLS, plain HTTP, credentials, retries."""

    keychain: Keychain = field(default_factory=Keychain)
    ca_file: Path | None = None
    insecure: frozenset[str] = frozenset()
    plain_http: frozenset[str] = frozenset()
    retries: int = 6
    backoff: float = 0.5
    max_wait: float = 60.0
    timeout: float = 120.0
    connections: int = 16
    chunk_size: int = 64 << 20  # blobs larger than this are sent in PATCH chunks of this size


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


def _host_matches(host: str, names: frozenset[str]) -> bool:
    return host in names or host.split(":")[0] in names


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


class Registry:
    """One registry host. Thread-safe: copies run in parallel through one client."""

    def __init__(self, host: str, options: Options) -> None:
        self.host = host
        self.options = options
        api_host = DOCKER_HUB_API if host == "docker.io" else host
        self.plain = _host_matches(host, options.plain_http)
        self.base = f"{'http' if self.plain else 'https'}://{api_host}"
        verify: ssl.SSLContext | bool = (
            False if _host_matches(host, options.insecure) else ssl_context(options.ca_file)
        )
        self.http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(options.timeout, connect=30.0),
            limits=httpx.Limits(
                max_connections=options.connections,
                max_keepalive_connections=options.connections,
            ),
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": "kferry"},
        )
        self.credential: Credential = options.keychain.get(host)
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}

    def close(self) -> None:
        self.http.close()

    # -- auth --------------------------------------------------------------------------------
    def _auth_header(self, scopes: tuple[str, ...]) -> dict[str, str]:
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            if self.credential.anonymous:
                return {}
            return {
                "Authorization": httpx.BasicAuth(
                    self.credential.username, self.credential.password
                )._auth_header
            }
        if challenge.scheme == "bearer":
            with self._lock:
                cached = self._tokens.get(scopes)
            if cached is not None and cached[1] > time.monotonic():
                return {"Authorization": f"Bearer {cached[0]}"}
            token, ttl = self._fetch_token(challenge, scopes)
            with self._lock:
                self._tokens[scopes] = (token, time.monotonic() + max(10.0, ttl - 10.0))
            return {"Authorization": f"Bearer {token}"}
        return {}

    def may_send_credentials(self, url: str) -> bool:
        """Credentials travel over TLS, or over plain HTTP to a host ``--plain-http`` names."""
        parts = urlsplit(url)
        if parts.scheme == "https":
            return True
        return parts.scheme == "http" and _host_matches(parts.netloc, self.options.plain_http)

    def _same_origin(self, url: str) -> bool:
        parts, base = urlsplit(url), urlsplit(self.base)
        return (parts.scheme, parts.netloc) == (base.scheme, base.netloc)

    def _credentials_for(self, url: str, scopes: tuple[str, ...]) -> dict[str, str]:
        """The Authorization header for a request to ``url``: only to this registry's own
        origin (an upload Location elsewhere gets none) and never in clear text."""
        if not self._same_origin(url) or not self.may_send_credentials(url):
            return {}
        return self._auth_header(scopes)

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError(f"{self.host}: Bearer challenge without a realm")
        realm_parts = urlsplit(realm)
        if realm_parts.scheme not in ("http", "https") or not realm_parts.netloc:
            raise AuthError(f"{self.host}: token realm {realm!r} is not an http(s) URL")
        if not self.credential.anonymous and not self.may_send_credentials(realm):
            raise AuthError(
                f"{self.host}: the registry sends clients to the token service {realm} over "
                f"plain HTTP; {self.credential.describe()} will not be sent there unencrypted. "
                f"Serve the token service over HTTPS, or if this network is trusted say so with "
                f"--plain-http {realm_parts.netloc}"
            )
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query += [("scope", s) for s in scopes]
        cred = self.credential
        try:
            if cred.identity_token:
                form = dict(query[:1]) | {
                    "grant_type": "refresh_token",
                    "client_id": "kferry",
                    "refresh_token": cred.identity_token,
                    "scope": " ".join(scopes),
                }
                resp = self._send_retrying(
                    lambda: self.http.build_request("POST", realm, data=form)
                )
            else:
                auth = None if cred.anonymous else httpx.BasicAuth(cred.username, cred.password)
                url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
                resp = self._send_retrying(
                    lambda: self.http.build_request("GET", url, headers=auth_headers(auth))
                )
        except httpx.HTTPError as exc:
            raise self._network_error(exc, f"token service {realm}") from None
        if resp.status_code in (401, 403):
            raise AuthError(
                f"{self.host}: the token service {realm} refused {cred.describe()} "
                f"(HTTP {resp.status_code}); {self._login_hint()}"
            )
        if resp.status_code != 200:
            raise RegistryError(
                f"{self.host}: token service {realm} answered HTTP {resp.status_code}"
            )
        try:
            data = json.loads(resp.content[: MAX_TOKEN_RESPONSE_BYTES + 1])
        except ValueError:
            data = None
        if not isinstance(data, dict) or len(resp.content) > MAX_TOKEN_RESPONSE_BYTES:
            raise AuthError(f"{self.host}: token service {realm} answered something not a token")
        token = data.get("token") or data.get("access_token")
        if not token:
            raise AuthError(f"{self.host}: token service {realm} returned no token")
        try:
            ttl = float(data.get("expires_in") or 60)
        except (TypeError, ValueError):
            ttl = 60.0
        return str(token), ttl

    # -- requests ----------------------------------------------------------------------------
    def _network_error(self, exc: BaseException, what: str) -> RegistryError:
        for e in _cause_chain(exc):
            if isinstance(e, ssl.SSLCertVerificationError):
                return RegistryError(
                    f"{self.host}: TLS certificate not trusted ({e.verify_message or e}); "
                    "if the registry uses a private CA, pass it with --ca-file FILE "
                    f"(or --insecure {self.host} to skip verification)"
                )
            if isinstance(e, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(e):
                return RegistryError(
                    f"{self.host}: answered plain HTTP to a TLS connection; if it really serves "
                    f"plain HTTP, say so with --plain-http {self.host}"
                )
        if isinstance(exc, (httpx.TransportError, httpx.StreamError)):
            return TransientError(f"{self.host}: {what}: {type(exc).__name__}: {exc}")
        return RegistryError(f"{self.host}: {what}: {type(exc).__name__}: {exc}")

    def _send_retrying(
        self, build: Callable[[], httpx.Request], stream: bool = False
    ) -> httpx.Response:
        """Send, retrying 5xx/429 and dropped connections with backoff (bodies replayable)."""
        opts = self.options
        for attempt in range(opts.retries + 1):
            last = attempt == opts.retries
            try:
                resp = self.http.send(build(), stream=stream)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                if last or any(isinstance(e, ssl.SSLError) for e in _cause_chain(exc)):
                    raise
                time.sleep(self._delay(attempt, None))
                continue
            if resp.status_code in RETRY_STATUS and not last:
                wait = _retry_after(resp)
                resp.close()
                time.sleep(self._delay(attempt, wait))
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.options.max_wait)
        base = self.options.backoff * (2**attempt)
        return float(min(base + random.uniform(0, base / 2), self.options.max_wait))

    def request(
        self,
        method: str,
        url: str,
        scopes: tuple[str, ...],
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> httpx.Response:
        """One API call with auth (challenge answered once) and retries."""
        if not url.startswith(("http://", "https://")):
            url = urljoin(self.base + "/", url.lstrip("/"))
        answered = False
        while True:
            hdrs = dict(headers or {}) | self._credentials_for(url, scopes)

            def build(h: dict[str, str] = hdrs) -> httpx.Request:
                return self.http.build_request(method, url, headers=h, content=content)

            try:
                resp = self._send_retrying(build, stream=stream)
                if follow:
                    resp = self._follow(resp, stream)
            except httpx.HTTPError as exc:
                raise self._network_error(exc, f"{method} {urlsplit(url).path}") from None
            if resp.status_code == 401 and not answered:
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                resp.close()
                if challenge is None:
                    raise AuthError(f"{self.host}: 401 Unauthorized without a challenge")
                self._challenge = challenge
                self._forget_token(scopes)  # an expired token is answered with a new one
                answered = True
                continue
            if resp.status_code == 401:
                resp.close()
                raise AuthError(
                    f"{self.host}: 401 Unauthorized for {' '.join(scopes) or 'the API'}; "
                    f"tried {self.credential.describe()}; {self._login_hint()}"
                )
            return resp

    def _login_hint(self) -> str:
        if self.credential.source == "--username/--password-stdin":
            return "check the user name and the password given on stdin (--password-stdin)"
        if self.credential.anonymous:
            return f"log in (docker login {self.host}) or pass --username with --password-stdin"
        return (
            f"check the credentials (docker login {self.host} again, or --username with "
            "--password-stdin)"
        )

    def _forget_token(self, scopes: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop(scopes, None)

    def _follow(self, resp: httpx.Response, stream: bool) -> httpx.Response:
        """Follow blob redirects (storage backends) without forwarding our Authorization."""
        for _ in range(5):
            if resp.status_code not in (301, 302, 303, 307, 308):
                return resp
            location = resp.headers.get("Location", "")
            resp.close()
            target = urljoin(str(resp.request.url), location)
            here, there = urlsplit(str(resp.request.url)), urlsplit(target)
            same = (here.scheme, here.netloc) == (there.scheme, there.netloc)
            hdrs = {
                k: v
                for k, v in resp.request.headers.items()
                if same or k.lower() != "authorization"
            }
            method = resp.request.method

            def build(m: str = method, t: str = target, h: dict[str, str] = hdrs) -> httpx.Request:
                return self.http.build_request(m, t, headers=h)

            resp = self._send_retrying(build, stream=stream)
        return resp

    # -- manifests ---------------------------------------------------------------------------
    def _read_capped(self, resp: httpx.Response, cap: int, where: str, what: str) -> bytes:
        buf = bytearray()
        try:
            for chunk in resp.iter_bytes():
                buf += chunk
                if len(buf) > cap:
                    raise RegistryError(
                        f"{where}: the registry sent a {what} larger than {cap >> 20} MiB; "
                        "refused (no registry serves manifests that large)"
                    )
        except httpx.HTTPError as exc:
            raise self._network_error(exc, f"GET {what}") from None
        finally:
            resp.close()
        return bytes(buf)

    def get_manifest(self, repo: str, ref: str, *, push: bool = False) -> Manifest:
        resp = self.request(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            self.scopes(repo, push),
            headers={"Accept": ACCEPT},
            stream=True,
        )
        where = f"{self.host}/{repo}{'@' if ref.startswith('sha256:') else ':'}{ref}"
        if resp.status_code == 404:
            resp.close()
            raise NotFound(f"{where}: not found (no such repository, tag or digest)")
        self._check(resp, where)
        raw = self._read_capped(resp, MAX_MANIFEST_BYTES, where, "manifest")
        manifest = parse_manifest(raw, resp.headers.get("Content-Type"), where)
        if ref.startswith("sha256:") and manifest.digest != ref:
            raise DigestMismatch(f"{where}: registry sent a manifest with digest {manifest.digest}")
        return manifest

    def manifest_digest(self, repo: str, ref: str, *, push: bool = False) -> str | None:
        """The digest a tag or digest currently names, or None when it does not exist."""
        resp = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{ref}",
            self.scopes(repo, push),
            headers={"Accept": ACCEPT},
        )
        if resp.status_code == 404:
            return None
        self._check(resp, f"{self.host}/{repo}:{ref}")
        digest = resp.headers.get("Docker-Content-Digest")
        if digest:
            return str(digest)
        try:
            return self.get_manifest(repo, ref, push=push).digest
        except NotFound:
            return None

    def put_manifest(self, repo: str, ref: str, manifest: Manifest) -> None:
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            self.scopes(repo, True),
            headers={"Content-Type": manifest.media_type},
            content=manifest.raw,
        )
        self._check(resp, f"{self.host}/{repo}: PUT manifest {ref}", ok=(200, 201, 202))
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != manifest.digest:
            raise DigestMismatch(
                f"{self.host}/{repo}: stored manifest {ref} as {got}, expected {manifest.digest}"
            )

    # -- blobs -------------------------------------------------------------------------------
    def blob_exists(self, repo: str, digest: str, *, push: bool = True) -> bool:
        resp = self.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", self.scopes(repo, push), follow=True
        )
        resp.close()
        if resp.status_code == 404:
            return False
        self._check(resp, f"{self.host}/{repo}@{digest}")
        return True

    @contextlib.contextmanager
    def open_blob(self, repo: str, digest: str) -> Iterator[Iterator[bytes]]:
        resp = self.request(
            "GET", f"/v2/{repo}/blobs/{digest}", self.scopes(repo, False), stream=True, follow=True
        )
        try:
            if resp.status_code == 404:
                raise NotFound(f"{self.host}/{repo}: blob {digest} not found")
            self._check(resp, f"{self.host}/{repo}: blob {digest}")
            yield self._body(resp, f"GET blob {digest} of {repo}")
        finally:
            resp.close()

    def _body(self, resp: httpx.Response, what: str) -> Iterator[bytes]:
        """The response body; a connection lost midway is a :class:`TransientError` that
        names what was being read."""
        try:
            yield from resp.iter_raw()
        except httpx.HTTPError as exc:
            raise self._network_error(exc, what) from None

    def mount_blob(self, repo: str, digest: str, source_repo: str) -> str | None:
        """Mount from another repository; None when mounted, else an upload location."""
        scopes = (*self.scopes(repo, True), f"repository:{source_repo}:pull")
        query = urlencode({"mount": digest, "from": source_repo})
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?{query}", scopes)
        resp.close()
        if resp.status_code == 201:
            return None
        self._check(resp, f"{self.host}/{repo}: mount {digest}", ok=(202,))
        return self._location(resp)

    def start_upload(self, repo: str) -> str:
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", self.scopes(repo, True))
        resp.close()
        self._check(resp, f"{self.host}/{repo}: start upload", ok=(202,))
        return self._location(resp)

    def upload(
        self,
        repo: str,
        location: str,
        digest: str,
        size: int,
        chunks: Iterable[bytes],
    ) -> None:
        """Send a blob's bytes to an upload session (one streamed PUT, or PATCHes if large)."""
        scopes = self.scopes(repo, True)
        if size > self.options.chunk_size:
            self._upload_chunked(repo, location, digest, size, chunks, scopes)
            return
        url = _with_query(location, digest=digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        hdrs = headers | self._credentials_for(url, scopes)
        try:
            resp = self.http.send(
                self.http.build_request("PUT", url, headers=hdrs, content=iter(chunks))
            )
        except httpx.HTTPError as exc:
            raise self._network_error(exc, f"upload of blob {digest}") from None
        self._check_upload(resp, url, repo, digest, scopes, (201, 204))

    def _check_upload(
        self,
        resp: httpx.Response,
        url: str,
        repo: str,
        digest: str,
        scopes: tuple[str, ...],
        ok: tuple[int, ...],
    ) -> None:
        """A streamed body cannot be replayed here: statuses worth another try become
        :class:`TransientError` and the caller starts the blob again (fresh session)."""
        where = f"{self.host}/{repo}: upload of blob {digest}"
        if resp.status_code in RETRY_STATUS:
            wait = _retry_after(resp)
            resp.close()
            raise TransientError(f"{where}: HTTP {resp.status_code}", wait)
        if resp.status_code == 401 and not (
            self._same_origin(url) and self.may_send_credentials(url)
        ):
            resp.close()
            there = urlsplit(url)
            raise AuthError(
                f"{where}: the registry sent the upload to {there.scheme}://{there.netloc}, "
                f"not {self.base}; kferry sends no credentials there (another host, or plain "
                "HTTP). Fix the registry's external URL (behind a TLS proxy: X-Forwarded-Proto)"
            )
        if resp.status_code == 401:
            challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            resp.close()
            if challenge is not None:
                self._challenge = challenge
            self._forget_token(scopes)
            raise TransientError(f"{where}: HTTP 401 (token expired?)")
        self._check(resp, where, ok=ok)

    def _upload_chunked(
        self,
        repo: str,
        location: str,
        digest: str,
        size: int,
        chunks: Iterable[bytes],
        scopes: tuple[str, ...],
    ) -> None:
        """PATCH the blob in pieces of ``chunk_size``, each streamed from the source."""
        stream = _Splitter(iter(chunks))
        offset = 0
        while offset < size:
            end = min(offset + self.options.chunk_size, size) - 1
            part = stream.take(end - offset + 1)
            hdrs = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{end}",
                "Content-Length": str(end - offset + 1),
            } | self._credentials_for(location, scopes)
            try:
                resp = self.http.send(
                    self.http.build_request("PATCH", location, headers=hdrs, content=part)
                )
            except httpx.HTTPError as exc:
                raise self._network_error(exc, f"upload of blob {digest}") from None
            self._check_upload(resp, location, repo, digest, scopes, (202,))
            location = self._location(resp)
            offset = end + 1
        resp = self.request(
            "PUT", _with_query(location, digest=digest), scopes, headers={"Content-Length": "0"}
        )
        self._check(resp, f"{self.host}/{repo}: finish upload of blob {digest}", ok=(201, 204))

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def scopes(repo: str, push: bool) -> tuple[str, ...]:
        return (f"repository:{repo}:{'pull,push' if push else 'pull'}",)

    def _location(self, resp: httpx.Response) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.host}: upload response without a Location header")
        return urljoin(str(resp.request.url), str(location))

    def _check(self, resp: httpx.Response, where: str, ok: tuple[int, ...] = (200,)) -> None:
        if resp.status_code in ok:
            return
        detail = ""
        body = b""
        with contextlib.suppress(Exception):
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > 64 << 10:  # an error body: the start says enough
                    break
        resp.close()
        with contextlib.suppress(Exception):
            errors = json.loads(body).get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:500]
        if resp.status_code == 400 and self.plain and (b"HTTPS server" in body or not resp.headers):
            raise RegistryError(
                f"{where}: {self.host} serves HTTPS, not plain HTTP; drop --plain-http "
                f"{self.host} (and pass --ca-file if its CA is private)"
            )
        if resp.status_code == 403:
            raise AuthError(
                f"{where}: access denied (HTTP 403) for {self.credential.describe()}"
                f"{': ' + detail if detail else ''}; the account needs push/pull rights there"
            )
        raise RegistryError(f"{where}: HTTP {resp.status_code}{': ' + detail if detail else ''}")


def auth_headers(auth: httpx.BasicAuth | None) -> dict[str, str]:
    return {"Authorization": auth._auth_header} if auth is not None else {}


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class _Splitter:
    """Hands out consecutive byte ranges of a chunk stream as streams of their own."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def take(self, n: int) -> Iterator[bytes]:
        while n > 0:
            chunk = self._left or next(self._chunks, b"")
            if not chunk:
                raise DigestMismatch(f"blob stream ended {n} bytes early")
            self._left = chunk[n:]
            piece = chunk[:n]
            n -= len(piece)
            yield piece


def verified(
    chunks: Iterable[bytes],
    digest: str,
    size: int,
    where: str,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Pass chunks through while hashing; the last chunk is held back until the digest and
    size check out, so a damaged stream never completes an upload."""
    algo, _, want = digest.partition(":")
    if algo != "sha256":
        raise RegistryError(f"{where}: unsupported digest algorithm {algo}")
    h = hashlib.sha256()
    seen = 0
    held: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        h.update(chunk)
        seen += len(chunk)
        if seen > size:
            raise DigestMismatch(f"{where}: {digest} is longer than its {size} bytes")
        if held is not None:
            if on_bytes:
                on_bytes(len(held))
            yield held
        held = chunk
    if seen != size or h.hexdigest() != want:
        raise DigestMismatch(
            f"{where}: {digest} arrived damaged ({seen} of {size} bytes, "
            f"sha256:{h.hexdigest()[:12]}...)"
        )
    if held is not None:
        if on_bytes:
            on_bytes(len(held))
        yield held


class Registries:
    """One :class:`Registry` per host, created on first use."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._by_host: dict[str, Registry] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> Registry:
        with self._lock:
            reg = self._by_host.get(host)
            if reg is None:
                reg = self._by_host[host] = Registry(host, self.options)
            return reg

    def close(self) -> None:
        for reg in self._by_host.values():
            reg.close()


__all__ = [
    "ANONYMOUS",
    "AuthError",
    "DigestMismatch",
    "NotFound",
    "Options",
    "Registries",
    "Registry",
    "RegistryError",
    "TransientError",
    "verified",
]
