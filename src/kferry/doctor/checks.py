"""The problems of the field report, recognised in cluster objects (plain dicts).

Every check is a pure function of API objects, so each can be tested on recorded documents
as well as on a live API server (``kferry.doctor.run`` fetches them):

* TokenRequest not served: ``serviceaccounts/token`` missing from ``/api/v1`` discovery
  (field report P10) -> istio must use first-party-jwt;
* admission webhooks whose service does not exist (the stale ``istio-galley`` of P8);
* pods and pod templates that pull from outside the private registry (P1/P4/P6);
* pods in ImagePullBackOff / ErrImagePull, with the reason translated (P7);
* Knative ``config-deployment`` without the private registry in its skip list (P7).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kferry.name import try_parse
from kferry.objref import object_ref, ref_of
from kferry.podspec import pod_spec_dicts

PULL_ERRORS = ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName")


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    object: str  # Kind/namespace/name
    finding: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "object": self.object,
            "finding": self.finding,
            "fix": self.fix,
        }


def token_request(core_v1: dict[str, Any]) -> Iterator[Finding]:
    names = {r.get("name") for r in core_v1.get("resources") or []}
    if "serviceaccounts/token" not in names:
        yield Finding(
            "error",
            "APIServer//api/v1",
            "TokenRequest is not served (no serviceaccounts/token in /api/v1): istio's "
            "third-party-jwt token volumes cannot be mounted",
            "kferry rewrite --fix istio-first-party-jwt (or enable TokenRequest on the API "
            "server: --service-account-issuer and --service-account-signing-key-file)",
        )


def stale_webhooks(
    configs: Iterable[dict[str, Any]], services: set[tuple[str, str]]
) -> Iterator[Finding]:
    for cfg in configs:
        kind = cfg.get("kind") or "ValidatingWebhookConfiguration"
        name = (cfg.get("metadata") or {}).get("name", "")
        for hook in cfg.get("webhooks") or []:
            svc = (hook.get("clientConfig") or {}).get("service")
            if not svc:
                continue
            key = (str(svc.get("namespace", "default")), str(svc.get("name", "")))
            if key not in services:
                resource = kind.lower()
                yield Finding(
                    "error",
                    object_ref(kind, "", name),
                    f"webhook {hook.get('name')} calls service {key[0]}/{key[1]}, which does "
                    "not exist: every matching request fails",
                    f"kubectl delete {resource} {name}",
                )
                break


def _images(pod: Mapping[str, Any]) -> Iterator[str]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod.get(key) or []:
            if c.get("image"):
                yield str(c["image"])


def outside_registry(objects: Iterable[dict[str, Any]], registry: str) -> Iterator[Finding]:
    """Images not under REG/PROJECT, grouped by namespace (pods owned by a workload that is
    itself reported are not repeated)."""
    prefix = registry.rstrip("/") + "/"
    by_ns: dict[str, dict[str, set[str]]] = {}
    for obj in objects:
        if obj.get("kind") == "Pod" and (obj.get("metadata") or {}).get("ownerReferences"):
            continue
        for pod in pod_spec_dicts(obj):
            for image in _images(pod):
                ref = try_parse(image)
                canonical = ref.canonical if ref else image
                if not canonical.startswith(prefix) and not image.startswith(prefix):
                    ns = (obj.get("metadata") or {}).get("namespace", "")
                    by_ns.setdefault(ns, {}).setdefault(canonical, set()).add(ref_of(obj))
    for ns in sorted(by_ns):
        images = by_ns[ns]
        objects_ = sorted({o for objs in images.values() for o in objs})
        yield Finding(
            "warning",
            f"Namespace//{ns}",
            f"{len(images)} images pulled from outside {registry}: "
            + ", ".join(sorted(images))
            + f" (in {', '.join(objects_)})",
            f"kferry mirror {' '.join(sorted(images))} --to {registry}, then kferry rewrite",
        )


def knative_skip(
    configmap: dict[str, Any] | None, registry: str, keys: Iterable[str]
) -> Iterator[Finding]:
    if configmap is None:
        return
    host = registry.split("/", 1)[0]
    data = configmap.get("data") or {}
    for key in keys:
        hosts = [h.strip() for h in str(data.get(key, "")).split(",")]
        if host in hosts:
            return
    yield Finding(
        "warning",
        ref_of(configmap, "ConfigMap"),
        f"Knative resolves image tags itself and {host} is not in its tag-resolution skip "
        "list: revisions fail with x509 or unauthorized errors from the private registry",
        f"kferry rewrite (knative-skip-tag-resolution) or add {host} to "
        f"{next(iter(keys))} in config-deployment",
    )
