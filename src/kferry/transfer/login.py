"""``kferry login`` / ``kferry logout``: check credentials against a registry, then keep them
in a containers ``auth.json`` (the file ``podman login`` and ``skopeo login`` write), for hosts
that have no docker.

The check is one ``GET /v2/`` answered with the credentials, through the same challenge code
as every copy (:mod:`kferry.transfer.auth`: Basic, or the bearer token flow), so a login that
succeeds here is one that ``mirror`` will succeed with. The file is written whole (temporary
file, fsync, rename) with mode 0600, other entries and keys kept as they were.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

from kferry.atomic import atomic_write
from kferry.errors import InputError
from kferry.transfer.credentials import Credential, Keychain, normalise_key
from kferry.transfer.errors import AuthError, CredentialsRejected, RegistryError
from kferry.transfer.registry import Registry
from kferry.transfer.transport import Options


def check_credentials(host: str, credential: Credential, options: Options) -> None:
    """Raise :class:`AuthError` (exit 1) unless the registry accepts ``credential``."""
    only = dataclasses.replace(options, keychain=Keychain({host: credential}, files=[]))
    registry = Registry(host, only)
    rejected = (
        f"{host}: the registry rejected user {credential.username!r} with that password; "
        "nothing was saved"
    )
    try:
        resp = registry.request("GET", "/v2/", ())
        status = resp.status_code
        resp.close()
    except CredentialsRejected as exc:
        via = " (its token service refused them)" if exc.via_token_service else ""
        raise AuthError(rejected + via) from None
    finally:
        registry.close()
    if status == 200:
        return
    if status in (401, 403):
        raise AuthError(f"{rejected} (HTTP {status})")
    raise RegistryError(f"{host}: GET /v2/ answered HTTP {status}; is this a registry?")


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read credentials file: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
        raise InputError(f"{path}: not an auth.json (expected an object with 'auths')")
    return doc


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = (json.dumps(doc, indent="\t") + "\n").encode()
    atomic_write(path, data, mode=0o600)  # secrets: 0600 whatever the umask or the old mode


def save_login(path: Path, host: str, credential: Credential) -> None:
    """Store ``auths[host] = {"auth": base64(user:password)}`` in ``path``."""
    doc = _read(path)
    auths: dict[str, Any] = doc.setdefault("auths", {})
    for key in [k for k in auths if normalise_key(k) == host]:
        del auths[key]  # one entry per host (an old "https://host" key would shadow it)
    raw = f"{credential.username}:{credential.password}".encode()
    auths[host] = {"auth": base64.b64encode(raw).decode()}
    _write(path, doc)


def remove_login(path: Path, host: str) -> bool:
    """Drop ``host``'s entries from ``path``; False when there were none."""
    doc = _read(path)
    auths: dict[str, Any] = doc.get("auths", {})
    keys = [k for k in auths if normalise_key(k) == host]
    if not keys:
        return False
    for key in keys:
        del auths[key]
    _write(path, doc)
    return True
