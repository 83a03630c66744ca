"""Registry credentials: containers ``auth.json``, docker ``config.json``, credential helpers,
explicit login.

Which files are read, first match wins (as skopeo and podman read them: containers/image@v5.36.1
pkg/docker/config/config.go:143 getAuthFilePaths and :550 getPathToAuthWithOS;
containers-auth.json(5)):

1. ``--authfile FILE``, else ``$REGISTRY_AUTH_FILE``: when one is given, it is the only file
   read (a user-specified path replaces the default list);
2. otherwise ``${XDG_RUNTIME_DIR}/containers/auth.json`` (``/run/containers/UID/auth.json``
   when ``XDG_RUNTIME_DIR`` is unset), where ``kferry login`` writes;
3. ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json``;
4. docker's ``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``).

All are the same JSON (``auths``, ``credHelpers``, ``credsStore``), looked up by registry
host. ``--username``/``--password-stdin`` on a command go before every file, for the target
registry.

Where credentials come from is recorded (``Credential.source``) so that a 401 can say which
credentials were tried, without ever showing a secret. Credential helpers are run as docker
runs them (``docker-credential-NAME get`` with the server URL on stdin); their output is
never logged.

Answering a registry's challenge with them is :mod:`kferry.transfer.auth`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kferry.errors import InputError

DOCKER_HUB_KEYS = (
    "https://index.docker.io/v1/",
    "index.docker.io",
    "docker.io",
    "registry-1.docker.io",
)


@dataclass(frozen=True, slots=True)
class Credential:
    """A username and secret, or an identity (refresh) token, and where they came from."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = "anonymous"

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token)

    def describe(self) -> str:
        """For messages: never the secret."""
        if self.anonymous:
            return "no credentials (anonymous)"
        who = f"user {self.username!r}" if self.username else "an identity token"
        return f"{who} from {self.source}"


ANONYMOUS = Credential()


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def primary_auth_file(authfile: Path | None = None) -> Path:
    """The auth.json ``kferry login`` writes: ``--authfile``, ``$REGISTRY_AUTH_FILE``, else
    ``${XDG_RUNTIME_DIR}/containers/auth.json`` (``/run/containers/UID/auth.json``)."""
    if authfile is not None:
        return authfile
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "containers" / "auth.json"
    return Path(f"/run/containers/{os.getuid()}/auth.json")


def auth_files(authfile: Path | None = None) -> list[Path]:
    """The files credentials are looked up in, in order (see the module docstring)."""
    explicit = authfile or (
        Path(os.environ["REGISTRY_AUTH_FILE"]) if os.environ.get("REGISTRY_AUTH_FILE") else None
    )
    if explicit is not None:
        return [explicit]
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        primary_auth_file(),
        Path(config_home) / "containers" / "auth.json",
        docker_config_path(),
    ]


def _keys_for(host: str) -> list[str]:
    keys = [
        host,
        f"https://{host}",
        f"http://{host}",
        f"https://{host}/v1/",
        f"https://{host}/v2/",
        f"{host}/v1/",
        f"{host}/v2/",
    ]
    if host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        keys = list(DOCKER_HUB_KEYS) + keys
    return keys


def normalise_key(key: str) -> str:
    k = re.sub(r"^https?://", "", key).rstrip("/")
    return re.sub(r"/v[12]$", "", k)


def _run_helper(helper: str, server: str, config: Path) -> Credential | None:
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        raise InputError(f"{config}: credential helper 'docker-credential-{helper}' is not on PATH")
    try:
        proc = subprocess.run(
            [exe, "get"], input=server.encode(), capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"credential helper docker-credential-{helper} failed: {exc}") from None
    if proc.returncode != 0:
        return None  # "credentials not found in native keychain": not an error
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise InputError(
            f"credential helper docker-credential-{helper} answered something that is not JSON"
        ) from None
    user, secret = str(data.get("Username", "")), str(data.get("Secret", ""))
    source = f"credential helper docker-credential-{helper}"
    if user == "<token>":
        return Credential(identity_token=secret, source=source)
    return Credential(user, secret, source=source)


def _from_entry(entry: dict[str, Any], source: str) -> Credential | None:
    if entry.get("identitytoken"):
        return Credential(identity_token=str(entry["identitytoken"]), source=source)
    if entry.get("auth"):
        try:
            user, _, secret = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"{source}: 'auth' is not base64 of user:password") from None
        return Credential(user, secret, source=source)
    if entry.get("username"):
        return Credential(str(entry["username"]), str(entry.get("password", "")), source=source)
    return None


def from_docker_config(host: str, config: Path | None = None) -> Credential | None:
    """Credentials for ``host`` from docker's config.json or a containers auth.json (the
    same format), and their credential helpers, if any."""
    path = config or docker_config_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read credentials file: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: credentials file is not a JSON object")
    keys = _keys_for(host)
    helpers = doc.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _run_helper(str(helpers[key]), key, path)
    auths = doc.get("auths") or {}
    wanted = {normalise_key(k) for k in keys}
    for key, entry in auths.items():
        if normalise_key(key) in wanted and isinstance(entry, dict):
            cred = _from_entry(entry, f"{path} (auths[{key!r}])")
            if cred is not None:
                return cred
    if doc.get("credsStore"):
        server = "https://index.docker.io/v1/" if host in DOCKER_HUB_KEYS else host
        return _run_helper(str(doc["credsStore"]), server, path)
    return None


class Keychain:
    """Credentials per registry host: explicit logins first, then the auth files in order
    (``files``; default :func:`auth_files`; ``config`` alone: that one file)."""

    def __init__(
        self,
        explicit: dict[str, Credential] | None = None,
        config: Path | None = None,
        files: list[Path] | None = None,
    ) -> None:
        self._explicit = dict(explicit or {})
        self._files = files if files is not None else ([config] if config is not None else None)
        self._cache: dict[str, Credential] = {}

    def files(self) -> list[Path]:
        return self._files if self._files is not None else auth_files()

    def get(self, host: str) -> Credential:
        if host in self._explicit:
            return self._explicit[host]
        if host not in self._cache:
            found = None
            for path in self.files():
                found = from_docker_config(host, path)
                if found is not None:
                    break
            self._cache[host] = found or ANONYMOUS
        return self._cache[host]
