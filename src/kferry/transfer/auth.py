"""Answering a registry's ``WWW-Authenticate`` challenge: Basic, or the bearer token flow.

:class:`RegistryAuth` is an ``httpx.Auth`` (httpx's extension point for credentials): it puts
the ``Authorization`` header a request needs on it. What httpx does not do and is written
here: the bearer token flow (a token per scope set, cached until shortly before it expires;
refresh tokens as an OAuth2 ``refresh_token`` grant). The challenge parser follows RFC 7235
(auth-params, quoted strings with backslash escapes).

Credentials (Basic, bearer tokens, refresh tokens) go only over TLS, or over plain HTTP to a
host that ``--plain-http`` names: a token realm, an upload ``Location`` or a redirect that
points elsewhere gets no credentials (:meth:`RegistryAuth.may_send_credentials`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httpx

from kferry.transfer.credentials import Credential
from kferry.transfer.errors import AuthError, CredentialsRejected, RegistryError
from kferry.transfer.transport import BUFFER, host_matches, network_error

# A request extension: the token scopes the request needs (``repository:NAME:pull``).
SCOPES = "kferry.scopes"
MAX_TOKEN_RESPONSE_BYTES = 1 << 20


class RegistryAuth(httpx.Auth):
    """The credentials of one registry host, answered to its last challenge. Thread-safe."""

    def __init__(
        self,
        host: str,
        credential: Credential,
        base: str,
        plain_http: frozenset[str],
        http: httpx.Client,
    ) -> None:
        self.host = host
        self.credential = credential
        self.base = base
        self.plain_http = plain_http
        self.http = http  # for token requests (sent without this auth)
        self.challenge: Challenge | None = None
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scopes = tuple(request.extensions.get(SCOPES, ()))
        request.headers.update(self.headers_for(str(request.url), scopes))
        yield request

    def answer(self, challenge: Challenge, scopes: tuple[str, ...]) -> None:
        """A 401's challenge: the next request answers it (an expired token gets a new one)."""
        self.challenge = challenge
        self.forget_token(scopes)

    def forget_token(self, scopes: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop(scopes, None)

    def _auth_header(self, scopes: tuple[str, ...]) -> dict[str, str]:
        challenge = self.challenge
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
        return parts.scheme == "http" and host_matches(parts.netloc, self.plain_http)

    def _same_origin(self, url: str) -> bool:
        parts, base = urlsplit(url), urlsplit(self.base)
        return (parts.scheme, parts.netloc) == (base.scheme, base.netloc)

    def sends_credentials_to(self, url: str) -> bool:
        """Only to this registry's own origin (an upload Location elsewhere gets none) and
        never in clear text."""
        return self._same_origin(url) and self.may_send_credentials(url)

    def headers_for(self, url: str, scopes: tuple[str, ...]) -> dict[str, str]:
        """The Authorization header for a request to ``url`` (see :meth:`sends_credentials_to`)."""
        if not self.sends_credentials_to(url):
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
                resp = self.http.send(
                    self.http.build_request("POST", realm, data=form, extensions={BUFFER: True})
                )
            else:
                auth = None if cred.anonymous else httpx.BasicAuth(cred.username, cred.password)
                url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
                headers = {"Authorization": auth._auth_header} if auth is not None else {}
                resp = self.http.send(
                    self.http.build_request("GET", url, headers=headers, extensions={BUFFER: True})
                )
        except httpx.HTTPError as exc:
            raise network_error(self.host, exc, f"token service {realm}") from None
        if resp.status_code in (401, 403):
            raise CredentialsRejected(
                f"{self.host}: the token service {realm} refused {cred.describe()} "
                f"(HTTP {resp.status_code}); {self.login_hint()}",
                via_token_service=True,
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

    def login_hint(self) -> str:
        if self.credential.source == "--username/--password-stdin":
            return "check the user name and the password given on stdin (--password-stdin)"
        if self.credential.anonymous:
            return (
                f"log in (kferry login {self.host}, or docker/podman login) or pass --username "
                "with --password-stdin"
            )
        return (
            f"check the credentials from {self.credential.source} (kferry login {self.host} "
            "again, or --username with --password-stdin)"
        )


_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """``Bearer realm="https://auth",service="reg",scope="repo:x:pull"`` -> Challenge."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    for m in _PARAM.finditer(rest):
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
    return Challenge(scheme.lower(), params)
