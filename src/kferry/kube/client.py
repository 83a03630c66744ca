"""Talking to a Kubernetes API server: kubeconfig, REST calls, retries, errors.

lightkube reads the kubeconfig (contexts, client certificates, tokens, exec credential
plugins, CA data) and gives us an httpx client configured for it; on top of that kferry
speaks plain REST: server-side apply needs only a PATCH with the apply content type, and
arbitrary kinds (every CRD of a Kubeflow release) need discovery rather than typed models.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from lightkube.config.client_adapter import Client as _httpx_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ConfigError

from kferry.errors import InputError, KferryError

RETRY = frozenset({429, 500, 502, 503, 504})


class KubeError(KferryError):
    """The API server refused something; ``status`` and ``reason`` say what."""

    exit_code = 1

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def _kubeconfig_path(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


class Kube:
    """An API server connection (thread-safe: httpx pools connections)."""

    def __init__(self, http: httpx.Client, server: str, namespace: str = "default") -> None:
        self.http, self.server, self.namespace = http, server, namespace

    @classmethod
    def connect(
        cls, kubeconfig: Path | None = None, context: str | None = None, timeout: float = 30.0
    ) -> Kube:
        path = _kubeconfig_path(kubeconfig)
        if not path.exists():
            raise InputError(f"{path}: no kubeconfig (give --kubeconfig or set KUBECONFIG)")
        try:
            config = KubeConfig.from_file(str(path)).get(context_name=context)
            if config is None:
                raise InputError(f"{path}: no context {context or '(current)'}")
            http = _httpx_client(
                config, ConnectionParams(timeout=httpx.Timeout(timeout), trust_env=False)
            )
        except ConfigError as exc:
            raise InputError(f"{path}: {exc}") from None
        return cls(http, config.cluster.server, config.namespace or "default")

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
        retries: int = 5,
    ) -> httpx.Response:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if body is not None else {}
        for attempt in range(retries + 1):
            try:
                resp = self.http.request(
                    method, path, content=content, headers=headers, params=params
                )
            except httpx.TransportError as exc:
                if attempt == retries:
                    raise KubeError(f"{self.server}: {method} {path}: {exc}") from None
                time.sleep(_backoff(attempt))
                continue
            if resp.status_code in RETRY and attempt < retries:
                time.sleep(_backoff(attempt))
                continue
            if resp.status_code not in ok:
                raise _error(resp, method, path)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, **params: str) -> dict[str, Any] | None:
        """GET a JSON object; None when it does not exist."""
        try:
            resp = self.request("GET", path, params=params or None)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        data: dict[str, Any] = resp.json()
        return data

    def watch(
        self, path: str, resource_version: str, timeout: float, **params: str
    ) -> Iterator[dict[str, Any]]:
        """Watch events ({type, object}) until ``timeout`` seconds pass."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(max(1, int(timeout))),
            "allowWatchBookmarks": "true",
        }
        query.update(params)
        with self.http.stream(
            "GET", path, params=query, timeout=httpx.Timeout(timeout + 10)
        ) as resp:
            if resp.status_code != 200:
                resp.read()
                raise _error(resp, "WATCH", path)
            for line in resp.iter_lines():
                if line.strip():
                    yield json.loads(line)


def _backoff(attempt: int) -> float:
    base = 0.2 * (2**attempt)
    return float(min(base + random.uniform(0, base / 2), 5.0))


def _error(resp: httpx.Response, method: str, path: str) -> KubeError:
    try:
        status = resp.json()
        message = str(status.get("message") or resp.text)
        reason = str(status.get("reason") or "")
    except ValueError:
        message, reason = resp.text.strip()[:300] or resp.reason_phrase, ""
    if resp.status_code == 401:
        message = f"unauthorized ({message}): check the kubeconfig's credentials"
    return KubeError(message, resp.status_code, reason)
