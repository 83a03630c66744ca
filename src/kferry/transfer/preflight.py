"""Preflight: every registry a copy needs, checked once before any image moves.

A missing CA, a wrong password or a registry that is down is one cause; without this check it
shows as one failure per image (21 identical lines for 21 images) after work has started.
Here each registry host is asked once, in parallel, before anything is copied:

1. reachable: a ``GET /v2/`` sent once without retries over a connection of its own, so that
   "connection refused", a name that does not resolve, an untrusted certificate, plain HTTP
   against TLS (``--plain-http`` on an HTTPS port) and TLS against plain HTTP are each told
   at once, with what to do, instead of after a minute of retries;
2. credentials accepted: ``GET /v2/`` through the same path the copy uses (the 401 challenge
   answered with the host's credentials, Basic or the token flow, with the usual retries);
3. for a target, push permission into the project: an upload session is started in the first
   planned repository and cancelled at once (``POST /v2/<repo>/blobs/uploads/`` then
   ``DELETE`` of its location: OCI distribution spec, "Cancel upload"); nothing is stored.

Every problem found is one line naming the registry; :class:`PreflightError` holds them (one
per registry) and the CLI prints them on stderr and exits 1. Hand-written: no library checks
a registry this way (skopeo/crane find out on the first image).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from kferry.name import Reference
from kferry.plan import Planned
from kferry.transfer import transport
from kferry.transfer.errors import AuthError, CredentialsRejected, RegistryError
from kferry.transfer.media import COPYABLE_DIGEST
from kferry.transfer.registry import Registries, Registry
from kferry.transfer.transport import RETRY_STATUS, Options, cause_chain, network_error

# "connection refused" may be a registry restarting: asked again after these pauses, no more.
CONNECT_PAUSES = (0.5, 1.0)
# /v2/ answering 429/5xx: tried this many times the usual retries (the copy's requests each
# have their own; this one request stands for all of them).
BUSY_ROUNDS = 2
MAX_PARALLEL = 8


class PreflightError(RegistryError):
    """One line per registry that is not ready; nothing was copied. Printed as the CLI
    prints any error (``kferry: error: ``, which each further line repeats)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\nkferry: error: ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class _Host:
    host: str
    push_repo: str | None  # a repository to probe push permission in (targets only)
    target: bool


def copyable(refs: Iterable[Reference]) -> list[Reference]:
    """The references the copier will try (others it refuses by themselves, with no
    registry asked: a digest other than sha256)."""
    return [r for r in refs if r.digest_algorithm in (None, COPYABLE_DIGEST)]


def check_planned(options: Options, planned: Sequence[Planned]) -> None:
    """Registry to registry: the source hosts and the target (push) of ``planned``."""
    todo = [p for p in planned if copyable([p.source])]
    check(options, pull=[p.source for p in todo], push=[p.target for p in todo])


def check(
    options: Options,
    *,
    pull: Iterable[Reference] = (),
    push: Iterable[Reference] = (),
    reach: Iterable[str] = (),
    checked: bool = False,
) -> None:
    """Check the hosts of ``pull`` (read from), ``push`` (written to: push permission in the
    first reference's repository of each host) and ``reach`` (hosts to be written to whose
    repositories are not known yet: reachability and credentials only). Raises
    :class:`PreflightError` listing every registry that is not ready. ``checked``: the hosts
    were reached and their credentials accepted moments ago (only push is checked)."""
    hosts: dict[str, _Host] = {}
    for ref in push:
        if ref.domain not in hosts:
            hosts[ref.domain] = _Host(ref.domain, ref.path, True)
    for host in reach:
        hosts.setdefault(host, _Host(host, None, True))
    for ref in copyable(pull):
        hosts.setdefault(ref.domain, _Host(ref.domain, None, False))
    if not hosts:
        return
    quick = dataclasses.replace(options, retries=0)
    registries = Registries(options)
    try:
        with ThreadPoolExecutor(min(MAX_PARALLEL, len(hosts))) as pool:
            found = list(
                pool.map(lambda h: _check_host(h, quick, registries, checked), hosts.values())
            )
    finally:
        registries.close()
    problems = [p for p in found if p]
    if problems:
        raise PreflightError(problems)


def _check_host(h: _Host, quick: Options, registries: Registries, checked: bool) -> str:
    """The problem with one host ('' when it is ready)."""
    try:
        reg = registries.get(h.host)
        if not checked:
            _reachable(h.host, quick)
            _credentials(reg, h)
        if h.push_repo is not None:
            _may_push(reg, h.push_repo)
    except RegistryError as exc:
        return str(exc)
    return ""


# -- 1. reachable -------------------------------------------------------------------------------
def _reachable(host: str, quick: Options) -> None:
    """One unauthenticated ``GET /v2/`` (any HTTP answer will do, even 401 or 5xx: the next
    steps judge it), told apart from the failures that retries would only delay."""
    plain = transport.host_matches(host, quick.plain_http)
    api = "registry-1.docker.io" if host == "docker.io" else host
    url = f"{'http' if plain else 'https'}://{api}/v2/"
    with transport.client(host, quick) as http:
        for pause in (*CONNECT_PAUSES, None):
            try:
                resp = http.get(url)
            except httpx.HTTPError as exc:
                if pause is not None and _refused(exc):
                    time.sleep(pause)
                    continue
                raise _unreachable(host, exc, plain) from None
            if resp.status_code == 400 and plain and b"HTTPS" in resp.content:
                raise RegistryError(
                    f"{host}: serves HTTPS, not plain HTTP: drop --plain-http {host} "
                    "(and pass --ca-file FILE if its certificate comes from a private CA)"
                )
            return


def _refused(exc: BaseException) -> bool:
    return any(isinstance(e, ConnectionRefusedError) for e in cause_chain(exc))


def _unreachable(host: str, exc: BaseException, plain: bool) -> RegistryError:
    chain = list(cause_chain(exc))
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return RegistryError(
            f"{host}: connection refused (nothing listens on that port): check the host and "
            "port in the reference or --to, and that the registry is running"
        )
    if any(isinstance(e, socket.gaierror) for e in chain):
        return network_error(host, exc, "GET /v2/")  # the copy's own words (names HTTPS_PROXY)
    if isinstance(exc, httpx.TimeoutException):
        return RegistryError(
            f"{host}: no answer ({type(exc).__name__}): check that this machine can reach it "
            "(firewall, routing)"
        )
    if not plain and any(
        isinstance(e, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(e) for e in chain
    ):
        return RegistryError(
            f"{host}: answered plain HTTP to a TLS connection: if it really serves plain "
            f"HTTP, say so with --plain-http {host}"
        )
    return transport.network_error(host, exc, "GET /v2/")


# -- 2. credentials -----------------------------------------------------------------------------
def _credentials(reg: Registry, h: _Host) -> None:
    """``GET /v2/`` as the copy would send it (challenge answered with the credentials)."""
    for _ in range(BUSY_ROUNDS):  # a busy registry (429/5xx) is waited for a while longer
        try:
            resp = reg.request("GET", "/v2/", ())
        except AuthError as exc:
            raise _rejected(reg, h, exc) from None
        if resp.status_code not in RETRY_STATUS:
            break
    if resp.status_code in RETRY_STATUS:
        raise RegistryError(
            f"{reg.host}: busy or down (GET /v2/ answered HTTP {resp.status_code}"
            f"{_detail(resp)} after {BUSY_ROUNDS * (reg.options.retries + 1)} tries): "
            "try again later, or ask its operators"
        )
    if resp.status_code == 404:
        raise RegistryError(
            f"{reg.host}: {reg.base}/v2/ answered HTTP 404: not a container registry API "
            "there (is the host or port that of another service?)"
        )
    if resp.status_code != 200:
        raise RegistryError(f"{reg.host}: GET /v2/ answered HTTP {resp.status_code}{_detail(resp)}")


def _rejected(reg: Registry, h: _Host, exc: AuthError) -> RegistryError:
    """A 401 at ``/v2/`` as what it means. Only :class:`CredentialsRejected` is about the
    credentials themselves (the registry answering 401 again after its challenge was answered,
    or the token service refusing them); the other AuthErrors (no challenge, a token realm
    that is not HTTPS...) already say what to do."""
    if not isinstance(exc, CredentialsRejected):
        return exc
    cred = reg.credential
    if cred.anonymous:
        return AuthError(
            f"{reg.host}: asks for credentials and none are configured for it: "
            f"{_login_hint(reg.host, h.target)}"
        )
    if cred.source == "--username/--password-stdin":
        fix = "check the user name and the password given on stdin"
    else:
        fix = f"log in again (kferry login {reg.host}) with the right password"
    return AuthError(f"{reg.host}: rejected the credentials ({cred.describe()}): {fix}")


def _login_hint(host: str, target: bool) -> str:
    how = f"kferry login {host}"
    return how + (", or --username USER --password-stdin" if target else "")


# -- 3. push permission -------------------------------------------------------------------------
def _may_push(reg: Registry, repo: str) -> None:
    """Start an upload in ``repo`` and cancel it: nothing is stored."""
    project = repo.split("/", 1)[0]
    try:
        resp = reg.request("POST", f"/v2/{repo}/blobs/uploads/", reg.scopes(repo, True))
    except AuthError:
        raise _denied(reg, repo, project, "HTTP 401") from None
    if resp.status_code in (401, 403):
        raise _denied(reg, repo, project, f"HTTP {resp.status_code}{_detail(resp)}")
    if resp.status_code == 404:
        raise RegistryError(
            f"{reg.host}: cannot push into {repo}: HTTP 404{_detail(resp)} (does project "
            f"{project!r} exist?)"
        )
    if resp.status_code not in (201, 202):
        raise RegistryError(
            f"{reg.host}: starting an upload in {repo} answered HTTP {resp.status_code}"
            f"{_detail(resp)}"
        )
    location = resp.headers.get("Location")
    if resp.status_code == 202 and location:
        with contextlib.suppress(RegistryError, httpx.HTTPError):
            url = str(resp.request.url.join(location))
            reg.request("DELETE", url, reg.scopes(repo, True)).close()


def _denied(reg: Registry, repo: str, project: str, why: str) -> AuthError:
    if reg.credential.anonymous:
        return AuthError(
            f"{reg.host}: pushing into project {project!r} needs credentials and none are "
            f"configured for it ({why}): {_login_hint(reg.host, True)}"
        )
    return AuthError(
        f"{reg.host}: {reg.credential.describe()} may not push into project {project!r} "
        f"(an upload to {repo} was refused: {why}): give the account push rights there "
        "(on Harbor: a Developer member or a robot account with push), or check --to"
    )


def _detail(resp: httpx.Response) -> str:
    """The registry's own words (its ``errors`` list), briefly."""
    try:
        errors = json.loads(resp.read()).get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:300]
    except Exception:
        return ""
    return f" ({text})" if text else ""
