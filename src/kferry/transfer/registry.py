"""The registry API (OCI distribution spec) over httpx: manifests, blobs, uploads, redirects.

What httpx does not do for us and is written here: the 401 challenge answered once per
request (:mod:`kferry.transfer.auth` supplies the credentials), cross-repository blob mounts,
chunked uploads, blob redirects to storage backends followed without our ``Authorization``,
and bounded reads of manifests. Connections, TLS and retries are :mod:`kferry.transfer.transport`.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterable, Iterator
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx

from kferry.name import is_digest
from kferry.transfer import transport
from kferry.transfer.auth import SCOPES, RegistryAuth, parse_challenge
from kferry.transfer.errors import (
    AuthError,
    CredentialsRejected,
    DigestMismatch,
    NotFound,
    RegistryError,
    TransientError,
)
from kferry.transfer.media import (
    ACCEPT,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Manifest,
    parse_manifest,
)
from kferry.transfer.transport import BUFFER, RETRY_STATUS, Options, retry_after

DOCKER_HUB_API = "registry-1.docker.io"
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class Registry:
    """One registry host. Thread-safe: copies run in parallel through one client."""

    def __init__(self, host: str, options: Options) -> None:
        self.host = host
        self.options = options
        api_host = DOCKER_HUB_API if host == "docker.io" else host
        self.plain = transport.host_matches(host, options.plain_http)
        self.base = f"{'http' if self.plain else 'https'}://{api_host}"
        self.http = transport.client(host, options)
        self.credential = options.keychain.get(host)
        self.auth = RegistryAuth(host, self.credential, self.base, options.plain_http, self.http)

    def close(self) -> None:
        self.http.close()

    # -- requests ----------------------------------------------------------------------------
    def _build(
        self,
        method: str,
        url: str,
        scopes: tuple[str, ...],
        headers: dict[str, str],
        content: bytes | Iterable[bytes] | None,
        stream: bool,
    ) -> httpx.Request:
        return self.http.build_request(
            method,
            url,
            headers=headers,
            content=content,
            extensions={SCOPES: scopes, BUFFER: not stream},
        )

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
            request = self._build(method, url, scopes, dict(headers or {}), content, stream)
            try:
                resp = self.http.send(request, stream=stream, auth=self.auth)
                if follow:
                    resp = self._follow(resp, stream)
            except httpx.HTTPError as exc:
                raise self._network_error(exc, f"{method} {urlsplit(url).path}") from None
            if resp.status_code == 401 and not answered:
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                resp.close()
                if challenge is None:
                    raise AuthError(f"{self.host}: 401 Unauthorized without a challenge")
                self.auth.answer(challenge, scopes)  # an expired token is answered anew
                answered = True
                continue
            if resp.status_code == 401:
                resp.close()
                raise CredentialsRejected(
                    f"{self.host}: 401 Unauthorized for {' '.join(scopes) or 'the API'}; "
                    f"tried {self.credential.describe()}; {self.auth.login_hint()}"
                )
            return resp

    def _network_error(self, exc: BaseException, what: str) -> RegistryError:
        return transport.network_error(self.host, exc, what)

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
            request = self.http.build_request(
                resp.request.method, target, headers=hdrs, extensions={BUFFER: not stream}
            )
            resp = self.http.send(request, stream=stream)
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
        where = f"{self.host}/{repo}{'@' if is_digest(ref) else ':'}{ref}"
        if resp.status_code == 404:
            resp.close()
            raise NotFound(f"{where}: not found (no such repository, tag or digest)")
        self._check(resp, where)
        raw = self._read_capped(resp, MAX_MANIFEST_BYTES, where, "manifest")
        manifest = parse_manifest(raw, resp.headers.get("Content-Type"), where)
        if is_digest(ref) and manifest.digest != ref:
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

    def tags(self, repo: str, page: int = 1000, max_pages: int = 10) -> set[str] | None:
        """Every tag of ``repo`` (``GET /v2/<name>/tags/list``, pages followed through the
        ``Link`` header); None when the registry will not list them or there are more than
        ``page * max_pages`` (the caller then asks tag by tag).

        Called for a repository the caller has read from: a 404 whose error code is
        ``NAME_UNKNOWN`` then means it has no tag (distribution answers so for a repository
        holding only untagged manifests), so the list is empty; any other 404 (a registry
        without the endpoint) is None as before."""
        url = f"/v2/{repo}/tags/list?{urlencode({'n': page})}"
        found: set[str] = set()
        for _ in range(max_pages):
            resp = self.request("GET", url, self.scopes(repo, False), stream=True)
            if resp.status_code == 404 and not found:
                body = self._read_capped(resp, 1 << 16, f"{self.host}/{repo}", "tag list error")
                return set() if _error_codes(body) == {"NAME_UNKNOWN"} else None
            if resp.status_code != 200:
                resp.close()
                return None
            link = resp.headers.get("Link", "")
            raw = self._read_capped(resp, MAX_MANIFEST_BYTES, f"{self.host}/{repo}", "tag list")
            try:
                listed = json.loads(raw).get("tags") or []
            except (ValueError, AttributeError):
                return None
            found.update(t for t in listed if isinstance(t, str))
            nxt = _LINK_NEXT.search(link)
            if nxt is None:
                return found
            url = urljoin(self.base + "/", nxt.group(1))
        return None

    def referrers(self, repo: str, digest: str, max_pages: int = 16) -> Manifest | None:
        """The referrers API's index of the manifests whose ``subject`` is ``digest``; None
        when the registry has no referrers API (it answers 404, or 400/405 for a path it
        does not route; opencontainers/distribution-spec@v1.1.0 spec.md "Listing Referrers":
        a registry with the API never answers 404), so the caller falls back to the tag
        schema. A list too long for one response comes in pages linked by ``Link: <...>;
        rel="next"`` (same section); they are followed, at most ``max_pages``, and joined
        into one index (one page is kept byte for byte). More pages than that, or a next page
        on another host, is an error, not a shorter list: a referrer must not stay behind
        unsaid, and credentials go only to the registry they are for."""
        url = f"/v2/{repo}/referrers/{digest}"
        where = f"{self.host}/{repo}: referrers of {digest}"
        pages: list[bytes] = []
        while url:
            if len(pages) == max_pages:
                raise RegistryError(f"{where}: more than {max_pages} pages of referrers")
            resp = self.request(
                "GET", url, self.scopes(repo, False), headers={"Accept": OCI_INDEX}, stream=True
            )
            if not pages and resp.status_code in (400, 404, 405):
                resp.close()
                return None
            self._check(resp, where)
            nxt = _LINK_NEXT.search(resp.headers.get("Link", ""))
            pages.append(self._read_capped(resp, MAX_MANIFEST_BYTES, where, "referrers list"))
            url = urljoin(self.base + "/", nxt.group(1)) if nxt else ""
            if url and urlsplit(url).netloc != urlsplit(self.base).netloc:
                raise RegistryError(f"{where}: the next page is on another host ({url})")
        if len(pages) == 1:
            return parse_manifest(pages[0], OCI_INDEX, where)
        doc = json.loads(parse_manifest(pages[0], OCI_INDEX, where).raw)
        listed = doc.setdefault("manifests", [])
        seen = {m.get("digest") for m in listed}
        for page in pages[1:]:
            for m in json.loads(parse_manifest(page, OCI_INDEX, where).raw).get("manifests") or []:
                if m.get("digest") not in seen:  # a list that changed between pages
                    seen.add(m.get("digest"))
                    listed.append(m)
        return parse_manifest(json.dumps(doc, indent=2).encode(), OCI_INDEX, where)

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
        request = self._build("PUT", url, scopes, headers, iter(chunks), False)
        try:
            resp = self.http.send(request, auth=self.auth)
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
            wait = retry_after(resp)
            resp.close()
            raise TransientError(f"{where}: HTTP {resp.status_code}", wait)
        if resp.status_code == 401 and not self.auth.sends_credentials_to(url):
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
                self.auth.challenge = challenge
            self.auth.forget_token(scopes)
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
            }
            request = self._build("PATCH", location, scopes, hdrs, part, False)
            try:
                resp = self.http.send(request, auth=self.auth)
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


def _error_codes(body: bytes) -> set[str]:
    """The ``errors[].code`` values of a registry error body (empty when it is none)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return set()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return set()
    return {e["code"] for e in errors if isinstance(e, dict) and isinstance(e.get("code"), str)}


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
