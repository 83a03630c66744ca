"""Fetching what the checks need from a cluster, and running them."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kferry.catalog import load_fixes
from kferry.doctor import checks, pulls
from kferry.doctor.auth import diagnose_auth
from kferry.doctor.checks import Finding
from kferry.kube.client import Kube, KubeError

_ADMISSION = "/apis/admissionregistration.k8s.io/v1"
_LISTS = {
    "Pod": "/api/v1/pods",
    "Service": "/api/v1/services",
    "Deployment": "/apis/apps/v1/deployments",
    "StatefulSet": "/apis/apps/v1/statefulsets",
    "DaemonSet": "/apis/apps/v1/daemonsets",
    "Job": "/apis/batch/v1/jobs",
    "CronJob": "/apis/batch/v1/cronjobs",
    "ValidatingWebhookConfiguration": f"{_ADMISSION}/validatingwebhookconfigurations",
    "MutatingWebhookConfiguration": f"{_ADMISSION}/mutatingwebhookconfigurations",
}


def _items(kube: Kube, kind: str) -> list[dict[str, Any]]:
    try:
        data = kube.get(_LISTS[kind]) or {}
    except KubeError:
        return []
    items: list[dict[str, Any]] = data.get("items") or []
    for item in items:
        item.setdefault("kind", kind)
    return items


def diagnose(
    kube: Kube, registry: str | None, lock: Mapping[str, str] | None = None
) -> list[Finding]:
    """Every finding; ``lock``: target reference -> source reference, for mirror commands."""
    with ThreadPoolExecutor(8) as pool:
        lists = dict(zip(_LISTS, pool.map(lambda k: _items(kube, k), _LISTS), strict=True))
    core_v1 = kube.get("/api/v1") or {}
    findings: list[Finding] = list(checks.token_request(core_v1))
    services = {
        (str(s["metadata"].get("namespace", "")), str(s["metadata"]["name"]))
        for s in lists["Service"]
    }
    webhooks = lists["ValidatingWebhookConfiguration"] + lists["MutatingWebhookConfiguration"]
    findings += checks.stale_webhooks(webhooks, services)
    if registry:
        workloads = [
            o
            for k in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")
            for o in lists[k]
        ]
        findings += checks.outside_registry(workloads, registry)
    findings += pulls.pull_failures(lists["Pod"], registry, lock)
    if registry:
        cm = kube.get("/api/v1/namespaces/knative-serving/configmaps/config-deployment")
        keys = load_fixes()["knative-skip-tag-resolution"]["keys"]
        findings += checks.knative_skip(cm, registry, keys)
    findings += diagnose_auth(kube)
    return findings
