"""A real Dex on loopback, started from the configuration a Kubeflow cluster holds.

The binary comes from ``scripts/peers dex`` (Dex v2.41.1 built from its Go module, cached under
``.cache/peers``; about two minutes the first time), or from the file ``KFERRY_DEX_BIN`` names.

:func:`start_dex` takes Dex's ``config.yaml`` as ``kferry users`` left it in the ConfigMap and
changes only what cannot work outside a cluster: memory storage instead of Kubernetes CRDs,
``web.http`` and the issuer on a free 127.0.0.1 port, and the password connector for the OAuth2
password grant plus one static client for the test. ``staticPasswords`` are untouched. The
environment is what the kubelet would give the container (:func:`kubelet_env`: the Secrets of
``envFrom`` and ``env``), so ``hashFromEnv`` entries read their hash from the real Secret.

:meth:`DexServer.password_grant` asks for tokens with an email and a password: 200 when Dex
accepts them, 401 when it does not.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import free_port, launch, peer_binary, stop_popen

START_TIMEOUT = 30.0

Obj = dict[str, Any]


class DexError(RuntimeError):
    pass


def dex_binary() -> Path:
    """The dex binary: ``KFERRY_DEX_BIN``, or ``scripts/peers dex``."""
    return peer_binary("dex", "KFERRY_DEX_BIN")


def kubelet_env(deployment: Obj, get_secret: Callable[[str], Obj | None]) -> dict[str, str]:
    """The environment the kubelet gives the Deployment's dex container: each ``envFrom``
    Secret's keys (with its prefix; later sources win), then ``env`` (literal values and
    ``secretKeyRef``). ConfigMap sources and field references are left out (Dex's config
    reads only Secrets)."""
    pod = deployment["spec"]["template"]["spec"]
    container = next((c for c in pod["containers"] if c.get("name") == "dex"), pod["containers"][0])
    env: dict[str, str] = {}

    def secret_data(name: str) -> dict[str, str]:
        secret = get_secret(name) or {}
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    for source in container.get("envFrom") or []:
        ref = source.get("secretRef")
        if ref:
            prefix = source.get("prefix") or ""
            env.update({prefix + k: v for k, v in secret_data(ref["name"]).items()})
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            value = secret_data(ref["name"]).get(ref["key"])
            if value is not None:
                env[var["name"]] = value
    return env


def local_config(config_yaml: str, port: int, client_id: str, client_secret: str) -> Obj:
    """Kubeflow's Dex config, runnable on loopback (see the module docstring)."""
    config: Obj = yaml.safe_load(config_yaml)
    issuer = f"http://127.0.0.1:{port}/dex"
    config["issuer"] = issuer
    config["storage"] = {"type": "memory"}
    config["web"] = {"http": f"127.0.0.1:{port}"}
    config["enablePasswordDB"] = True
    config["oauth2"] = {**(config.get("oauth2") or {}), "passwordConnector": "local"}
    config["logger"] = {"level": "info", "format": "text"}
    config["staticClients"] = [
        *(config.get("staticClients") or []),
        {
            "id": client_id,
            "secret": client_secret,
            "name": "kferry test",
            "redirectURIs": ["http://127.0.0.1/callback"],
        },
    ]
    return config


@dataclass
class DexServer:
    issuer: str
    client_id: str
    client_secret: str
    process: subprocess.Popen[bytes]
    log_file: Path
    config_file: Path
    _client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))

    def password_grant(self, username: str, password: str) -> httpx.Response:
        """The OAuth2 resource-owner password grant (``POST /dex/token``)."""
        return self._client.post(
            f"{self.issuer}/token",
            data={
                "grant_type": "password",
                "username": username,
                "password": password,
                "scope": "openid email profile",
            },
            auth=(self.client_id, self.client_secret),
        )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        self._client.close()
        stop_popen(self.process, timeout=10)


def start_dex(
    config_yaml: str,
    env: Mapping[str, str],
    directory: Path,
    *,
    binary: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> DexServer:
    """Start Dex with ``config_yaml`` (made local) and ``env``; wait until its discovery
    document answers. Raises DexError with the end of its log if it exits or does not answer."""
    binary = binary or dex_binary()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    client_id, client_secret = "kferry-test", secrets.token_urlsafe(16)
    config = local_config(config_yaml, port, client_id, client_secret)
    config_file = directory / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    config_file.chmod(0o600)
    log_file = directory / "dex.log"
    # Only what Dex needs: the kubelet's env for the container, nothing of the test's own.
    process_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    # tied: killed with the test process, whatever happens to it
    process = launch([str(binary), "serve", str(config_file)], log_file, tied=True, env=process_env)
    server = DexServer(config["issuer"], client_id, client_secret, process, log_file, config_file)
    deadline = time.monotonic() + timeout
    url = f"{server.issuer}/.well-known/openid-configuration"
    with httpx.Client(timeout=2.0) as probe:
        while True:
            if process.poll() is not None:
                server.stop()
                raise DexError(f"dex exited ({process.returncode}); its log ends:\n{_tail(server)}")
            with contextlib.suppress(httpx.TransportError):
                if probe.get(url).status_code == 200:
                    return server
            if time.monotonic() > deadline:
                server.stop()
                raise DexError(f"dex did not answer {url} in {timeout} s:\n{_tail(server)}")
            time.sleep(0.05)


@contextlib.contextmanager
def running_dex(config_yaml: str, env: Mapping[str, str], directory: Path) -> Iterator[DexServer]:
    server = start_dex(config_yaml, env, directory)
    try:
        yield server
    finally:
        server.stop()


def _tail(server: DexServer, lines: int = 30) -> str:
    return "\n".join(server.log().splitlines()[-lines:])
