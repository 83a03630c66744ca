"""Talking to a Kubernetes API server: kubeconfig, REST calls, retries, errors.

lightkube reads the kubeconfig (contexts, client certificates, tokens, exec credential
plugins, CA data) and gives us an httpx client configured for it; on top of that kferry
speaks plain REST: server-side apply needs only a PATCH with the apply content type, and
arbitrary kinds (every CRD of a Kubeflow release) need discovery rather than typed models.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from lightkube.config.client_adapter import Client as _httpx_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError

from kferry.errors import InputError, KferryError

RETRY = frozenset({429, 500, 502, 503, 504})
log = logging.getLogger(__name__)


class KubeError(KferryError):
    """The API server refused something; ``status`` and ``reason`` say what."""

    exit_code = 1

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# kubeconfig fields holding a file path, resolved against the file that names them
# (kubernetes/client-go@v0.36.3 tools/clientcmd/loader.go:511 ResolveLocalPaths, and :605-616
# GetClusterFileReferences / GetAuthInfoFileReferences; an exec command only when it holds a
# path separator, so a command found on PATH stays as it is)
_PATH_FIELDS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}


def kubeconfig_files(explicit: Path | None) -> list[Path]:
    """The kubeconfig files to read, kubectl's way: ``--kubeconfig``, else every entry of
    ``$KUBECONFIG`` (``os.pathsep``-separated; empty entries and missing files skipped, a
    file named twice read once: kubernetes/client-go@v0.36.3 tools/clientcmd/loader.go:168),
    else ``~/.kube/config``."""
    if explicit is not None:
        return [explicit]
    env = os.environ.get("KUBECONFIG")
    if env:
        return list(dict.fromkeys(Path(p).expanduser() for p in env.split(os.pathsep) if p))
    return [Path.home() / ".kube" / "config"]


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError:
        raise InputError(f"{path}: not a valid kubeconfig (YAML)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a kubeconfig (expected a mapping)")
    return data


def merge_kubeconfigs(paths: list[Path]) -> dict[str, Any]:
    """One kubeconfig from several, by kubectl's rules (kubernetes/client-go@v0.36.3
    tools/clientcmd/loader.go:197 ClientConfigLoadingRules.Load): a cluster, user or context
    is taken whole from the first file that names it (:190, maps merged first to last at
    :248); current-context from the first file that sets one (struct values merged last to
    first at :259, so the earliest non-empty value wins); relative file paths are made
    absolute against the file they are written in (:511). Hand-written because lightkube
    reads one file only (gtsystem/lightkube KubeConfig.from_file and from_env, in 0.22.0
    as in the 1.0 line)."""
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    seen: dict[str, set[str]] = {"clusters": set(), "users": set(), "contexts": set()}
    for path in paths:
        data = _read_kubeconfig(path)
        if not merged.get("current-context") and data.get("current-context"):
            merged["current-context"] = data["current-context"]
        for section, item in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            entries = data.get(section) or []
            if not isinstance(entries, list):
                raise InputError(f"{path}: {section}: expected a list")
            for i, entry in enumerate(entries):
                name = entry.get("name") if isinstance(entry, dict) else None
                if not isinstance(name, str) or not isinstance(entry.get(item), dict):
                    raise InputError(f"{path}: {section}[{i}]: needs a name and a {item}")
                if name in seen[section]:
                    continue
                seen[section].add(name)
                body = dict(entry[item])
                for key in _PATH_FIELDS.get(item, ()):
                    value = body.get(key)
                    if isinstance(value, str) and value and not os.path.isabs(value):
                        body[key] = str(path.parent.resolve() / Path(value).expanduser())
                exec_ = body.get("exec")
                if isinstance(exec_, dict):
                    command = exec_.get("command")
                    if (
                        isinstance(command, str)
                        and os.sep in command
                        and not os.path.isabs(command)
                    ):
                        body["exec"] = {**exec_, "command": str(path.parent.resolve() / command)}
                merged[section].append({"name": name, item: body})
    return merged


def _in_cluster(service_account: Path) -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (service_account / "token").is_file()


def load_config(
    kubeconfig: Path | None = None,
    context: str | None = None,
    service_account: Path = SERVICE_ACCOUNT,
) -> SingleConfig:
    """The connection settings, found as kubectl finds them: ``--kubeconfig``, else
    ``$KUBECONFIG`` (a list, merged), else ``~/.kube/config``, else, inside a pod, the pod's
    service account (lightkube's ``KubeConfig.from_service_account``)."""
    paths = kubeconfig_files(kubeconfig)
    if kubeconfig is not None and not kubeconfig.exists():
        raise InputError(f"{kubeconfig}: no such kubeconfig")
    existing = [p for p in paths if p.exists()]
    where = os.pathsep.join(str(p) for p in paths)
    try:
        if existing:
            merged = merge_kubeconfigs(existing)
            # relative paths are already absolute: fname only feeds lightkube's own resolving
            config = KubeConfig.from_dict(merged, fname=existing[0])
        elif _in_cluster(service_account):
            if context is not None:
                raise InputError(f"--context {context}: no kubeconfig (in-cluster config only)")
            config = KubeConfig.from_service_account(service_account)
            where = f"in-cluster ({service_account})"
        else:
            raise InputError(
                f"{where}: no kubeconfig (give --kubeconfig or set KUBECONFIG; inside a pod, "
                "the service account is used)"
            )
        single = config.get(context_name=context)
    except ConfigError as exc:
        raise InputError(f"{where}: {exc}") from None
    except KeyError as exc:  # a context naming a cluster or user no file defines
        raise InputError(
            f"{where}: context {context or '(current)'} names {exc} undefined"
        ) from None
    if single is None:  # pragma: no cover - get() without default raises instead
        raise InputError(f"{where}: no context {context or '(current)'}")
    return single


class Kube:
    """An API server connection (thread-safe: httpx pools connections)."""

    def __init__(self, http: httpx.Client, server: str, namespace: str = "default") -> None:
        self.http, self.server, self.namespace = http, server, namespace

    @classmethod
    def connect(
        cls,
        kubeconfig: Path | None = None,
        context: str | None = None,
        timeout: float = 30.0,
        service_account: Path = SERVICE_ACCOUNT,
    ) -> Kube:
        config = load_config(kubeconfig, context, service_account)
        try:
            http = _httpx_client(
                config, ConnectionParams(timeout=httpx.Timeout(timeout), trust_env=False)
            )
        except ConfigError as exc:
            raise InputError(f"kubeconfig context {config.context_name}: {exc}") from None
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
                log.info("retrying %s %s (%s: %s)", method, path, type(exc).__name__, exc)
                time.sleep(_backoff(attempt))
                continue
            if resp.status_code in RETRY and attempt < retries:
                log.info("retrying %s %s (HTTP %d)", method, path, resp.status_code)
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
