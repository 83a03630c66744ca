"""A pull secret for a user's namespace: the registry credentials new namespaces need.

Kubeflow's Profile has no template for the service accounts the profile controller creates
in the user's namespace (``default-editor``, ``default-viewer``), so nothing in the manifests
can give new namespaces an ``imagePullSecrets`` entry (kubeflow/kubeflow issues 4315, 5268).
``kferry users add --pull-secret NAME`` does it when the user is added: it copies the Secret
from the namespace the installation keeps it in and adds it to those service accounts, once
the profile controller has created them. The Secret's data is copied, never read out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kferry.errors import InputError
from kferry.kube import Kube, KubeError

ACCOUNTS = ("default-editor", "default-viewer")


@dataclass
class PullSecretResult:
    secret: str
    namespace: str
    copied: bool = False
    accounts: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "namespace": self.namespace,
            "copied": self.copied,
            "accounts": self.accounts,
            "missing": self.missing,
        }


def source_secret(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    secret = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if secret is None:
        raise InputError(
            f"--pull-secret {name}: no Secret {name} in namespace {namespace} to copy "
            "(create it there, or say where it is with --pull-secret-from)"
        )
    return secret


def grant(kube: Kube, secret: dict[str, Any], namespace: str, timeout: float) -> PullSecretResult:
    """Copy ``secret`` into ``namespace`` and add it to the profile's service accounts
    (waiting up to ``timeout`` for the profile controller to create them)."""
    name = str(secret["metadata"]["name"])
    result = PullSecretResult(name, namespace)
    deadline = time.monotonic() + timeout
    while kube.get(f"/api/v1/namespaces/{namespace}") is None:
        if time.monotonic() >= deadline:
            result.missing = [f"namespace {namespace}", *ACCOUNTS]
            return result
        time.sleep(1.0)
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": secret.get("type", "Opaque"),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kferry"},
        },
        "data": secret.get("data") or {},
    }
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    kube.request(
        "PATCH",
        path,
        body=body,
        params={"fieldManager": "kferry", "force": "true"},
        content_type="application/apply-patch+yaml",
    )
    result.copied = True
    for account in ACCOUNTS:
        sa_path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}"
        while (sa := kube.get(sa_path)) is None and time.monotonic() < deadline:
            time.sleep(1.0)
        if sa is None:
            result.missing.append(account)
            continue
        names = [s.get("name") for s in sa.get("imagePullSecrets") or []]
        if name not in names:
            try:
                kube.request(
                    "PATCH",
                    sa_path,
                    content_type="application/merge-patch+json",
                    body={"imagePullSecrets": [{"name": n} for n in [*names, name]]},
                )
            except KubeError:
                result.missing.append(account)
                continue
        result.accounts.append(account)
    return result
