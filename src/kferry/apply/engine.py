"""Installing manifests the way Kubeflow needs: server-side apply, in dependency order.

Phases: (1) namespaces and CRDs, then wait until every CRD is Established; (2) other
cluster-scoped objects; (3) namespaced objects (service accounts, config and RBAC before
workloads, custom resources last); (4) admission webhook configurations, each only once the
services it calls have ready endpoints (bounded by the timeout; then it is named as failed
with the service it waited for). Custom resources written in a version their CRD converts
through a webhook (cert-manager's v1alpha2 objects in Kubeflow 1.4) need that webhook's
service just the same, so they wait with phase 4. Conflicts, transient errors and "no
matches for kind" while a CRD registers are retried with backoff; any other rejection is
reported with the object and the server's message. Rerunning reports everything unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kferry.kube.client import Kube, KubeError
from kferry.kube.discovery import Discovery, Resource
from kferry.objref import ref_of

FIELD_MANAGER = "kferry"
WEBHOOK_KINDS = frozenset({"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"})
PHASES = ("namespaces and CRDs", "cluster-scoped", "namespaced", "admission webhooks")
_NAMESPACED_ORDER = (
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "Role",
    "RoleBinding",
    "PersistentVolumeClaim",
    "Service",
)
_BUILTIN_GROUPS = (
    "v1",
    "apps/",
    "batch/",
    "rbac.authorization.k8s.io/",
    "policy/",
    "networking.k8s.io/",
    "autoscaling/",
    "scheduling.k8s.io/",
    "storage.k8s.io/",
    "admissionregistration.k8s.io/",
    "apiextensions.k8s.io/",
    "coordination.k8s.io/",
    "discovery.k8s.io/",
)


@dataclass
class ApplyResult:
    applied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": len(self.applied),
            "unchanged": len(self.unchanged),
            "failed": [{"object": o, "message": m} for o, m in self.failed],
        }


class Progress:
    def phase(self, index: int, total: int) -> None: ...

    def done(self, ref: str, outcome: str) -> None: ...


def phase_of(obj: dict[str, Any], scope: Callable[[dict[str, Any]], bool | None]) -> int:
    kind = obj.get("kind")
    if kind in ("Namespace", "CustomResourceDefinition"):
        return 0
    if kind in WEBHOOK_KINDS:
        return 3
    namespaced = scope(obj)
    if namespaced is None:  # unknown kind yet: decided by whether it names a namespace
        namespaced = bool((obj.get("metadata") or {}).get("namespace"))
    return 2 if namespaced else 1


def _what(obj: dict[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name")
    if obj.get("kind") in WEBHOOK_KINDS:
        return f"webhook {name}"
    return f"{obj.get('kind')} {name} (its CRD converts versions through a webhook)"


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without bookkeeping: an apply that only records its field ownership (the
    server's one-time "before-first-apply" entry for objects created with no fields to own)
    has changed nothing."""
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("resourceVersion", "managedFields")
    }
    return {**obj, "metadata": meta}


def _order(obj: dict[str, Any]) -> int:
    kind = str(obj.get("kind"))
    api = str(obj.get("apiVersion"))
    if kind in _NAMESPACED_ORDER:
        return _NAMESPACED_ORDER.index(kind)
    if api == "v1" or api.startswith(_BUILTIN_GROUPS):
        return len(_NAMESPACED_ORDER)
    return len(_NAMESPACED_ORDER) + 1  # custom resources after the built-in kinds


class Applier:
    def __init__(
        self,
        kube: Kube,
        *,
        timeout: float = 300.0,
        dry_run: bool = False,
        jobs: int = 8,
        progress: Progress | None = None,
    ) -> None:
        self.kube = kube
        self.discovery = Discovery(kube)
        self.timeout, self.dry_run, self.jobs = timeout, dry_run, jobs
        self.progress = progress or Progress()
        self._conversions: dict[tuple[str, str], tuple[str, str]] = {}

    def run(self, objects: Sequence[dict[str, Any]]) -> ApplyResult:
        result = ApplyResult()
        self.discovery.refresh()
        phases: list[list[dict[str, Any]]] = [[], [], [], []]
        for obj in objects:
            phases[phase_of(obj, self._namespaced)].append(obj)
        for index, batch in enumerate(phases):
            # every wait (kinds registering, CRDs establishing, webhook services) gets the
            # whole --timeout, counted from the start of its phase
            self.deadline = time.monotonic() + self.timeout
            self.progress.phase(index, len(batch))
            if index in (1, 2):
                # objects stored through a CRD conversion webhook wait for it, like webhooks
                converted = [o for o in batch if self._conversion_service(o)]
                phases[3].extend(converted)
                batch = [o for o in batch if not self._conversion_service(o)]
            if index == 2:
                batch.sort(key=_order)
            if index == 3:
                self._webhooks(batch, result)
                continue
            self._apply_all(batch, result)
            if index == 0:
                self.deadline = time.monotonic() + self.timeout
                self._wait_crds(
                    [o for o in batch if o.get("kind") == "CustomResourceDefinition"], result
                )
                self._conversions = self._conversion_webhooks()
        return result

    def _conversion_webhooks(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(group, kind) -> (storage version, "ns/service") for CRDs converting by webhook."""
        out: dict[tuple[str, str], tuple[str, str]] = {}
        try:
            crds = self.kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions") or {}
        except KubeError:
            return out
        for crd in crds.get("items") or []:
            spec = crd.get("spec") or {}
            conversion = spec.get("conversion") or {}
            svc = ((conversion.get("webhook") or {}).get("clientConfig") or {}).get("service")
            if conversion.get("strategy") != "Webhook" or not svc:
                continue
            storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "")
            out[(spec.get("group", ""), (spec.get("names") or {}).get("kind", ""))] = (
                storage,
                f"{svc.get('namespace', 'default')}/{svc.get('name')}",
            )
        return out

    def _conversion_service(self, obj: dict[str, Any]) -> str | None:
        """The conversion webhook service an object needs (written in a non-storage version)."""
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        found = self._conversions.get((group, str(obj.get("kind"))))
        if found is None or found[0] == version:
            return None
        return found[1]

    def _namespaced(self, obj: dict[str, Any]) -> bool | None:
        res = self.discovery.find(str(obj.get("apiVersion")), str(obj.get("kind")))
        return None if res is None else res.namespaced

    # -- one object ----------------------------------------------------------------------------
    def _apply_all(self, batch: list[dict[str, Any]], result: ApplyResult) -> None:
        with ThreadPoolExecutor(self.jobs) as pool:
            outcomes = list(pool.map(self._apply_one, batch))
        for obj, (outcome, message) in zip(batch, outcomes, strict=True):
            ref = ref_of(obj)
            if outcome == "applied":
                result.applied.append(ref)
            elif outcome == "unchanged":
                result.unchanged.append(ref)
            else:
                result.failed.append((ref, message))
            self.progress.done(ref, outcome)

    def _resource(self, obj: dict[str, Any]) -> Resource | None:
        api, kind = str(obj.get("apiVersion")), str(obj.get("kind"))
        res = self.discovery.find(api, kind)
        while res is None and time.monotonic() < self.deadline:
            time.sleep(1.0)  # a CRD may still be registering: ask discovery again
            self.discovery.refresh()
            res = self.discovery.find(api, kind)
        return res

    def _apply_one(self, obj: dict[str, Any]) -> tuple[str, str]:
        res = self._resource(obj)
        if res is None:
            return "failed", (
                f"no matches for kind {obj.get('kind')!r} in version "
                f"{obj.get('apiVersion')!r} (is its CRD installed?)"
            )
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        namespace = str(meta.get("namespace") or "default") if res.namespaced else None
        if res.namespaced and not meta.get("namespace"):
            obj = {**obj, "metadata": {**meta, "namespace": namespace}}
        path = res.path(namespace, name)
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if self.dry_run:
            params["dryRun"] = "All"
        delay = 0.5
        recreated = False
        while True:
            try:
                before = self.kube.get(path)
                resp = self.kube.request(
                    "PATCH",
                    path,
                    body=obj,
                    params=params,
                    content_type="application/apply-patch+yaml",
                )
                after = resp.json()
                if before is not None and _content(before) == _content(after):
                    return "unchanged", ""
                return "applied", ""
            except KubeError as exc:
                message = str(exc)
                if (
                    exc.status == 422
                    and "roleRef" in message
                    and "immutable" in message
                    and not self.dry_run
                    and not recreated
                ):
                    # a binding whose role changed between releases: like kubectl auth
                    # reconcile, delete it and create it again
                    self.kube.request("DELETE", path, ok=(200, 202, 404))
                    recreated = True
                    continue
                retry = exc.status == 409 or (
                    exc.status == 404 and exc.reason == "NotFound" and "namespaces" not in path
                )
                if retry and time.monotonic() < self.deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    if exc.status == 404:
                        self.discovery.refresh()
                    continue
                return "failed", str(exc)

    # -- waits -----------------------------------------------------------------------------------
    def _wait_crds(self, crds: list[dict[str, Any]], result: ApplyResult) -> None:
        if self.dry_run:
            return
        pending = {str((c.get("metadata") or {}).get("name")) for c in crds}
        pending -= {r.split("/")[-1] for r, _ in result.failed}
        while pending and time.monotonic() < self.deadline:
            for name in sorted(pending):
                crd = self.kube.get(
                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                )
                conditions = ((crd or {}).get("status") or {}).get("conditions") or []
                if any(
                    c.get("type") == "Established" and c.get("status") == "True" for c in conditions
                ):
                    pending.discard(name)
            if pending:
                time.sleep(0.5)
        for name in sorted(pending):
            result.failed.append(
                (f"CustomResourceDefinition//{name}", f"not Established within {self.timeout:.0f}s")
            )
        self.discovery.refresh()

    def _webhooks(self, batch: list[dict[str, Any]], result: ApplyResult) -> None:
        """Apply each webhook configuration once every service it calls has endpoints."""
        waiting = list(batch)
        while waiting:
            ready: list[tuple[dict[str, Any], list[str]]] = []
            still: list[tuple[dict[str, Any], list[str]]] = []
            for obj in waiting:
                missing = self._services_without_endpoints(obj)
                (still if missing else ready).append((obj, missing))
            if ready:
                self._apply_all([o for o, _ in ready], result)
            waiting = [o for o, _ in still]
            if not waiting:
                return
            if time.monotonic() >= self.deadline:
                for obj, missing in still:
                    result.failed.append(
                        (
                            ref_of(obj),
                            (
                                f"{_what(obj)} not applied: waited {self.timeout:.0f}s for "
                                f"ready endpoints of service {', '.join(missing)}"
                            ),
                        )
                    )
                    self.progress.done(ref_of(obj), "failed")
                return
            time.sleep(1.0)

    def _services_without_endpoints(self, obj: dict[str, Any]) -> list[str]:
        services = []
        for hook in obj.get("webhooks") or []:
            svc = (hook.get("clientConfig") or {}).get("service")
            if svc:
                services.append(f"{svc.get('namespace', 'default')}/{svc.get('name')}")
        conversion = self._conversion_service(obj)
        if conversion:
            services.append(conversion)
        missing = []
        for service in dict.fromkeys(services):
            ns, name = service.split("/", 1)
            endpoints = self.kube.get(f"/api/v1/namespaces/{ns}/endpoints/{name}")
            if not any(s.get("addresses") for s in (endpoints or {}).get("subsets") or []):
                missing.append(service)
        return missing
