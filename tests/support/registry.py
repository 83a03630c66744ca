"""A real CNCF distribution registry (``docker-registry`` 2.8) as a subprocess on loopback.

``start_registry`` writes a config file, starts ``docker-registry serve`` on a free
127.0.0.1 port with filesystem storage under the given directory, and waits until ``/v2/``
answers. Variants: plain HTTP or TLS (a fresh CA, server cert for 127.0.0.1 and localhost),
anonymous, htpasswd (bcrypt) or token auth (see :mod:`tests.support.tokenserver`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import bcrypt
import httpx
import yaml

from tests.support import markers
from tests.support.pki import CertificateAuthority, issue_client_cert, new_ca
from tests.support.processes import LiveSet, free_port, launch, stop_popen
from tests.support.tokenserver import TokenServer, start_token_server

AuthKind = Literal["htpasswd", "token"] | None

REGISTRY_BINARY = "docker-registry"
DEFAULT_USERNAME = "kferry"
DEFAULT_PASSWORD = "ferry-secret-pw"
# URLs that foreign / non-distributable layers may point at (validation.manifests.urls.allow).
DEFAULT_FOREIGN_URLS_ALLOW = ("^https?://",)
# bcrypt cost used for htpasswd. The registry checks the hash on *every* request that carries
# Basic credentials, so the default cost (12, ~0.25 s a check) would dominate test time.
HTPASSWD_BCRYPT_ROUNDS = 4
START_TIMEOUT = 15.0


# --------------------------------------------------------------------------------------------
# Client-side auth: Basic and the Docker Bearer token flow


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="..",service="..",scope=".."`` → ``("bearer", {...})``."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def _basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _scope_key(path: str) -> str:
    """The repository a /v2/ API path is about ('' for /v2/ itself, '_catalog' for it)."""
    match = re.match(r"^/v2/(.+?)/(manifests|blobs|tags)/", path)
    if match:
        return match.group(1)
    return "_catalog" if path.startswith("/v2/_catalog") else ""


class RegistryAuth(httpx.Auth):
    """httpx auth for a registry: answers Basic challenges and runs the Bearer token flow.

    For sync ``httpx.Client`` only. Tokens are cached per repository; on a new challenge for
    the same repository the scopes asked for are the union of what was asked before and what
    the challenge names, as Docker does. With no credentials the token request is anonymous.
    A failed token request ends the flow, so the caller sees the token server's answer (e.g.
    401 for wrong credentials).
    """

    requires_request_body = True  # the request may be sent twice
    # Only the token server's answer is read (explicitly); registry responses stay streamable.
    requires_response_body = False

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self.username = username
        self.password = password
        self._lock = threading.Lock()
        self._basic = False
        self._tokens: dict[str, str] = {}
        self._scopes: dict[str, dict[str, set[str]]] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = _scope_key(request.url.path)
        with self._lock:
            basic, token = self._basic, self._tokens.get(key)
        if basic and self.username is not None and self.password is not None:
            request.headers["Authorization"] = _basic_header(self.username, self.password)
        elif token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401 or "www-authenticate" not in response.headers:
            return
        scheme, params = parse_challenge(response.headers["www-authenticate"])
        if scheme == "basic":
            if self.username is None or self.password is None:
                return
            with self._lock:
                self._basic = True
            request.headers["Authorization"] = _basic_header(self.username, self.password)
            yield request
            return
        if scheme != "bearer" or "realm" not in params:
            return
        with self._lock:
            wanted = self._scopes.setdefault(key, {})
            for scope in params.get("scope", "").split():
                resource, _, actions = scope.rpartition(":")
                wanted.setdefault(resource, set()).update(a for a in actions.split(",") if a)
            scopes = [f"{res}:{','.join(sorted(acts))}" for res, acts in sorted(wanted.items())]
        query: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in params:
            query.append(("service", params["service"]))
        query.extend(("scope", scope) for scope in scopes)
        token_request = httpx.Request("GET", params["realm"], params=query)
        if self.username is not None and self.password is not None:
            token_request.headers["Authorization"] = _basic_header(self.username, self.password)
        token_response = yield token_request
        token_response.read()  # sync clients only (all this harness uses)
        if token_response.status_code != 200:
            return
        body = token_response.json()
        new_token = body.get("token") or body.get("access_token")
        if not isinstance(new_token, str):
            return
        with self._lock:
            self._tokens[key] = new_token
        request.headers["Authorization"] = f"Bearer {new_token}"
        yield request


# --------------------------------------------------------------------------------------------
# The registry process


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


# What the ``registry_factory`` fixture returns: start_registry minus the directory.
RegistryFactory = Callable[..., "Registry"]


_LIVE = LiveSet()


@dataclass(eq=False)
class Registry:
    """A running ``docker-registry``. Build it with :func:`start_registry`."""

    host: str
    url: str
    port: int
    tls: bool
    auth: AuthKind
    username: str | None
    password: str | None
    ca_file: Path | None
    storage: Path
    directory: Path
    config_file: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None
    ca: CertificateAuthority | None = None
    token_server: TokenServer | None = None
    owns_token_server: bool = False
    start_seconds: float = 0.0
    # require_client_cert: the certificate (and key) this harness shows the registry
    client_cert: tuple[Path, Path] | None = None

    # -- as kferry's target

    def login_args(self) -> list[str]:
        """kferry's flags to push here: its CA, its user, the password on stdin
        (:meth:`password_stdin`)."""
        return [
            "--ca-file",
            str(self.ca_file),
            "--username",
            str(self.username),
            "--password-stdin",
        ]

    def password_stdin(self) -> bytes:
        return f"{self.password}\n".encode()

    # -- life cycle

    def _launch(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        binary = shutil.which(REGISTRY_BINARY)
        if binary is None:
            raise RuntimeError(f"{REGISTRY_BINARY} is not on PATH: run scripts/system-deps")
        self._run([binary, "serve", str(self.config_file)], env)

    def _run(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``argv`` as this registry and wait until it answers (stopped if it does not)."""
        started = time.perf_counter()
        # Not tied to the starting thread: fixtures may start a registry from any thread;
        # _LIVE stops it at exit.
        self.process = launch(argv, self.log_file, tied=False, env=env)
        _LIVE.add(self)
        try:
            self._wait_ready(started)
        except BaseException:
            self._terminate()
            raise
        self.start_seconds = time.perf_counter() - started

    def _wait_ready(self, started: float) -> None:
        assert self.process is not None
        deadline = started + START_TIMEOUT
        with httpx.Client(verify=self.verify, timeout=2.0) as probe:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"docker-registry exited with {self.process.returncode}:\n{self.logs()}"
                    )
                try:
                    response = probe.get(f"{self.url}/v2/")
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code in (200, 401):
                    return
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"docker-registry did not answer /v2/:\n{self.logs()}")
                time.sleep(0.01)

    def _terminate(self) -> None:
        process = self.process  # kept after stop, for its returncode
        if process is not None:
            stop_popen(process, timeout=5)
        _LIVE.discard(self)

    def stop(self) -> None:
        """Stop the registry (and the token server it started itself). Idempotent."""
        self._terminate()
        if self.owns_token_server and self.token_server is not None:
            self.token_server.stop()

    def restart(self) -> None:
        """Stop and start again: same port, config, storage (and upload secret)."""
        self._terminate()
        self._launch()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers

    def logs(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What to give httpx as ``verify``: a context trusting this registry's CA."""
        if self.ca_file is None:
            return True
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.client_cert is not None:  # httpx takes the client certificate from the context
            context.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
        return context

    @property
    def cert_dir(self) -> Path | None:
        """A directory holding only ``ca.crt`` (what skopeo's ``--cert-dir`` wants)."""
        return self.ca_file.parent if self.ca_file is not None else None

    def client(
        self,
        *,
        anonymous: bool = False,
        username: str | None = None,
        password: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> httpx.Client:
        """An httpx client for this registry's API: base URL, CA, and auth that works here.

        ``anonymous`` drops the credentials; ``username``/``password`` replace them;
        ``base_url`` points elsewhere (e.g. a FlakyProxy in front of this registry).
        """
        if anonymous:
            user, pw = None, None
        else:
            user = username if username is not None else self.username
            pw = password if password is not None else self.password
        return httpx.Client(
            base_url=base_url or self.url,
            verify=self.verify,
            auth=RegistryAuth(user, pw),
            timeout=timeout,
            **kwargs,
        )

    def ref(self, repo: str, tag_or_digest: str = "latest") -> str:
        """``host/repo:tag`` or ``host/repo@sha256:...``."""
        sep = (
            "@"
            if re.match(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$", tag_or_digest)
            else ":"
        )
        return f"{self.host}/{repo}{sep}{tag_or_digest}"


def write_docker_config(
    directory: Path,
    *registries: Registry,
    identity_tokens: Mapping[str, str] | None = None,
) -> Path:
    """Write ``DIRECTORY/config.json`` (Docker's format) with an ``auths`` entry for every
    registry that has credentials, or an ``identitytoken`` where ``identity_tokens`` maps its
    host to one. Returns ``DIRECTORY``: what ``DOCKER_CONFIG`` should point at."""
    auths: dict[str, dict[str, str]] = {}
    for registry in registries:
        token = (identity_tokens or {}).get(registry.host)
        if token is not None:
            auths[registry.host] = {
                "auth": base64.b64encode(f"{registry.username or '<token>'}:".encode()).decode(),
                "identitytoken": token,
            }
        elif registry.username is not None and registry.password is not None:
            creds = f"{registry.username}:{registry.password}".encode()
            auths[registry.host] = {"auth": base64.b64encode(creds).decode()}
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.json"
    config.write_text(json.dumps({"auths": auths}, indent=2))
    config.chmod(0o600)
    return directory


def _write_htpasswd(path: Path, username: str, password: str) -> None:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=HTPASSWD_BCRYPT_ROUNDS))
    path.write_text(f"{username}:{hashed.decode()}\n")
    path.chmod(0o600)


def start_registry(
    tmp_dir: Path,
    *,
    tls: bool,
    auth: AuthKind = None,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    token_server: TokenServer | None = None,
    ca: CertificateAuthority | None = None,
    port: int | None = None,
    foreign_urls_allow: Iterable[str] | None = DEFAULT_FOREIGN_URLS_ALLOW,
    extra_config: Mapping[str, Any] | None = None,
    server_names: Iterable[str] = (),
    require_client_cert: bool = False,
) -> Registry:
    """Start ``docker-registry serve`` on 127.0.0.1 with storage in ``tmp_dir/storage``.

    ``auth="token"`` without ``token_server`` starts one (plain HTTP unless ``tls``, in which
    case it shares the registry's CA) that the registry owns and stops. With a given token
    server, ``username``/``password`` are added to its users. ``foreign_urls_allow`` is
    ``validation.manifests.urls.allow`` (None: leave distribution's default, which rejects
    every manifest that lists layer URLs). ``extra_config`` is deep-merged into the config.
    ``server_names`` are more names on the TLS certificate (e.g. a name only a proxy resolves).
    ``require_client_cert`` (TLS only): clients must show a certificate from the registry's CA
    (``http.tls.clientcas``); the harness's own is :attr:`Registry.client_cert`.
    """
    markers.started(markers.REGISTRY, "a docker-registry")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    storage = tmp_dir / "storage"
    storage.mkdir(exist_ok=True)
    port = port or free_port()
    scheme = "https" if tls else "http"
    host = f"127.0.0.1:{port}"
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": host,
            # Fixed per registry so upload sessions survive restart().
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }
    if foreign_urls_allow is not None:
        config["validation"] = {"manifests": {"urls": {"allow": list(foreign_urls_allow)}}}

    ca_file: Path | None = None
    client_cert: tuple[Path, Path] | None = None
    if tls:
        if ca is None:
            ca = new_ca(tmp_dir / "ca")
        cert_file, key_file = ca.issue_server_cert(
            tmp_dir / "tls", "registry", hosts=("127.0.0.1", "localhost", *server_names)
        )
        config["http"]["tls"] = {"certificate": str(cert_file), "key": str(key_file)}
        ca_file = ca.cert_file
        if require_client_cert:
            config["http"]["tls"]["clientcas"] = [str(ca.cert_file)]
            client_cert = issue_client_cert(ca, tmp_dir / "tls", "harness", "harness")

    owns_token_server = False
    if auth == "htpasswd":
        htpasswd = tmp_dir / "htpasswd"
        _write_htpasswd(htpasswd, username, password)
        config["auth"] = {"htpasswd": {"realm": "kferry-test-registry", "path": str(htpasswd)}}
    elif auth == "token":
        if token_server is None:
            token_server = start_token_server(tmp_dir / "token", ca=ca if tls else None)
            owns_token_server = True
        token_server.add_user(username, password)
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.rootcertbundle),
            }
        }
    elif auth is not None:
        raise ValueError(f"unknown auth kind {auth!r}")

    if extra_config:
        _deep_merge(config, extra_config)
    config_file = tmp_dir / "config.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    registry = Registry(
        host=host,
        url=f"{scheme}://{host}",
        port=port,
        tls=tls,
        auth=auth,
        username=username if auth else None,
        password=password if auth else None,
        ca_file=ca_file,
        storage=storage,
        directory=tmp_dir,
        config_file=config_file,
        log_file=tmp_dir / "registry.log",
        ca=ca,
        token_server=token_server,
        owns_token_server=owns_token_server,
        client_cert=client_cert,
    )
    try:
        registry._launch()
    except BaseException:
        if owns_token_server and token_server is not None:
            token_server.stop()
        raise
    return registry


__all__ = [
    "CertificateAuthority",
    "Registry",
    "RegistryAuth",
    "free_port",
    "new_ca",
    "parse_challenge",
    "start_registry",
    "write_docker_config",
]


def bundle_load_args(
    bundle: str | Path, target: Registry, lock: Path, project: str = "air"
) -> list[str]:
    """``kferry bundle load BUNDLE --to TARGET/PROJECT`` with the target's login, JSON out."""
    return [
        "bundle", "load", str(bundle), "--to", f"{target.host}/{project}",
        *target.login_args(), "-o", "json", "--lock", str(lock),
    ]  # fmt: skip
