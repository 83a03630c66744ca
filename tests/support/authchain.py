"""Kubeflow's login chain on loopback: a real oauth2-proxy in front of a real Dex and a
stand-in for the dashboard.

Without istio there is no gateway: oauth2-proxy runs in reverse-proxy mode and plays both the
gateway and its ext_authz check. Its routes are the gateway's (Kubeflow 1.9+ VirtualServices
``auth/dex`` and ``oauth2-proxy/oauth2-proxy``): ``/dex/`` goes to Dex without a login (the
render's ``skip_auth_routes = ["^/dex/"]``), ``/oauth2/`` is oauth2-proxy itself, everything
else needs a session and goes to the dashboard stand-in.

oauth2-proxy (v7.6.0, the version Kubeflow 1.9.1 runs, built by ``scripts/peers oauth2-proxy``)
is started with the render's own ``oauth2_proxy.cfg`` and the environment its Deployment gives
it (client id and secret, cookie secret, ``OAUTH2_PROXY_COOKIE_SECURE`` from ``FORCE_HTTPS``...),
resolved from the render's Secret and ConfigMap. Flags replace only what differs on loopback:
the listen address, the upstreams (``static://200`` in ext_authz mode), Dex's in-cluster URLs
(issuer, token and keys), the sign-in logo's path (mounted from a ConfigMap in the pod) and
``--pass-authorization-header`` (in ext_authz mode the render's
``set_authorization_header`` and istio's ``headersToUpstreamOnAllow: [authorization]`` bring the
ID token to the app; in reverse-proxy mode this flag does).

:class:`Dashboard` is hand-written because neither istio nor the central dashboard can run
here. It plays two parts: istio's ``RequestAuthentication dex-jwt`` (the ``Authorization:
Bearer`` ID token's ``iss`` must be the configured issuer, else Envoy's 401 "Jwt issuer is not
configured"; its ``email`` claim becomes ``kubeflow-userid``, as ``outputClaimToHeaders`` does;
the signature was checked by oauth2-proxy already and is not checked again), and the central
dashboard's ``GET /api/workgroup/env-info``: the user, and as namespaces the Profiles the real API
server holds for that owner (the owner binding the profile controller makes for each Profile).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.support.dex import DexServer
from tests.support.processes import free_port, launch, peer_binary, stop_popen

Obj = dict[str, Any]
START_TIMEOUT = 30.0


class AuthChainError(RuntimeError):
    pass


def oauth2_proxy_binary() -> Path:
    """``KFERRY_OAUTH2_PROXY_BIN``, or ``scripts/peers oauth2-proxy``."""
    return peer_binary("oauth2-proxy", "KFERRY_OAUTH2_PROXY_BIN")


# -- the dashboard stand-in


def _claims(token: str) -> Obj | None:
    try:
        payload = token.split(".")[1]
        data: Obj = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return data


@dataclass
class Dashboard:
    """The central dashboard behind istio's JWT check (see the module docstring)."""

    issuer: str
    profiles_of: Callable[[str], list[str]]  # owner email -> Profile names
    seen_users: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def start(self) -> Dashboard:
        dashboard = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                claims = _claims(auth[7:]) if auth.startswith("Bearer ") else None
                if claims is None:
                    self._send(403, b"RBAC: access denied", "text/plain")
                    return
                if claims.get("iss") != dashboard.issuer:
                    self._send(401, b"Jwt issuer is not configured", "text/plain")
                    return
                user = str(claims.get("email", ""))  # -> kubeflow-userid
                dashboard.seen_users.append(user)
                if self.path.startswith("/api/workgroup/env-info"):
                    names = dashboard.profiles_of(user)
                    info = {
                        "user": user,
                        "platform": {"kubeflowVersion": "test", "provider": "other"},
                        "namespaces": [
                            {"namespace": n, "role": "owner", "user": user} for n in names
                        ],
                        "isClusterAdmin": False,
                    }
                    self._send(200, json.dumps(info).encode(), "application/json")
                    return
                self._send(200, b"<html><body>central dashboard</body></html>", "text/html")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# -- oauth2-proxy as Kubeflow configures it


def _named(render: list[Obj], kind: str, prefix: str, namespace: str) -> Obj:
    for doc in render:
        meta = doc["metadata"]
        named = meta["name"] == prefix or meta["name"].startswith(prefix + "-")
        if doc["kind"] == kind and meta.get("namespace") == namespace and named:
            return doc
    raise KeyError(f"no {kind} {namespace}/{prefix}")


def deployment_env(render: list[Obj], overrides: dict[str, str]) -> dict[str, str]:
    """The env the kubelet gives the render's oauth2-proxy container (secretKeyRef and
    configMapKeyRef resolved from the render), with ``overrides`` per ConfigMap key."""
    deployment = _named(render, "Deployment", "oauth2-proxy", "oauth2-proxy")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = _named(render, "Secret", ref["name"], "oauth2-proxy")
            if ref["key"] in (secret.get("stringData") or {}):
                env[var["name"]] = str(secret["stringData"][ref["key"]])
            else:
                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            cm = _named(render, "ConfigMap", ref["name"], "oauth2-proxy")
            env[var["name"]] = overrides.get(ref["key"], str(cm["data"][ref["key"]]))
    return env


def config_file(render: list[Obj]) -> str:
    deployment = _named(render, "Deployment", "oauth2-proxy", "oauth2-proxy")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    name = next(v["configMap"]["name"] for v in volumes if v["name"] == "oauth2-proxy-config")
    cm = _named(render, "ConfigMap", name, "oauth2-proxy")
    return str(cm["data"]["oauth2_proxy.cfg"])


@dataclass
class Gateway:
    """oauth2-proxy playing the istio gateway: the URL a browser opens."""

    url: str
    process: subprocess.Popen[bytes]
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        stop_popen(self.process, timeout=10)


def start_gateway(
    render: list[Obj],
    dex: DexServer,
    dashboard: Dashboard,
    directory: Path,
    *,
    issuer: str | None = None,
    parameters: dict[str, str] | None = None,
    tls: tuple[Path, Path, Path] | None = None,
    flags: tuple[str, ...] = (),
) -> Gateway:
    """oauth2-proxy with the render's configuration in front of ``dex`` and ``dashboard``.
    ``issuer`` replaces the issuer it expects (default: Dex's); ``parameters`` replace keys
    of the ``oauth2-proxy-parameters`` ConfigMap (``FORCE_HTTPS``...); ``tls`` (certificate,
    key, CA file) serves the gateway over HTTPS, as a site's TLS-terminating gateway does;
    ``flags`` are more oauth2-proxy flags (an admin's change)."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / "oauth2_proxy.cfg"
    cfg.write_text(config_file(render))
    logo = directory / "kubeflow-logo.svg"  # the Deployment mounts it at /custom-theme/
    logo.write_text(
        str(
            _named(render, "ConfigMap", "oauth2-proxy-theme", "oauth2-proxy")["data"][
                "kubeflow-logo.svg"
            ]
        )
    )
    port = free_port()
    dex_root = dex.issuer.rsplit("/dex", 1)[0]
    listen = [f"--http-address=127.0.0.1:{port}"]
    scheme, verify = "http", ssl.create_default_context()
    if tls is not None:
        cert, key, ca = tls
        listen = [
            f"--http-address=127.0.0.1:{free_port()}",
            f"--https-address=127.0.0.1:{port}",
            f"--tls-cert-file={cert}",
            f"--tls-key-file={key}",
        ]
        scheme, verify = "https", ssl.create_default_context(cafile=str(ca))
    argv = [
        str(oauth2_proxy_binary()),
        *listen,
        f"--config={cfg}",
        f"--upstream={dex_root}/dex/",
        f"--upstream={dashboard.url}",
        f"--oidc-issuer-url={issuer or dex.issuer}",
        f"--redeem-url={dex.issuer}/token",
        f"--oidc-jwks-url={dex.issuer}/keys",
        "--pass-authorization-header=true",
        f"--custom-sign-in-logo={logo}",
        *flags,
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(deployment_env(render, parameters or {}))
    log_file = directory / "oauth2-proxy.log"
    process = launch(argv, log_file, tied=True, env=env)
    gateway = Gateway(f"{scheme}://127.0.0.1:{port}", process, log_file)
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0, verify=verify) as probe:
        while True:
            if process.poll() is not None:
                raise AuthChainError(
                    f"oauth2-proxy exited ({process.returncode}):\n{gateway.log()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if probe.get(gateway.url + "/ping").status_code == 200:
                    return gateway
            if time.monotonic() > deadline:
                gateway.stop()
                raise AuthChainError(f"oauth2-proxy did not answer in time:\n{gateway.log()}")
            time.sleep(0.05)


@contextlib.contextmanager
def running_gateway(
    render: list[Obj], dex: DexServer, dashboard: Dashboard, directory: Path, **kwargs: Any
) -> Iterator[Gateway]:
    gateway = start_gateway(render, dex, dashboard, directory, **kwargs)
    try:
        yield gateway
    finally:
        gateway.stop()
