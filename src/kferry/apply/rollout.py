"""Waiting for applied Deployments to become available (``kferry apply --wait``).

A Deployment is done when its controller has seen the current generation and reports every
replica updated and available (what ``kubectl rollout status`` checks). While waiting, the
pods that the Deployment's selector matches are read: a container waiting in
``ImagePullBackOff``/``ErrImagePull`` will not get better by itself, so the wait stops at once
for that Deployment with the doctor's explanation of the pull failure
(:func:`kferry.doctor.pulls.pull_failures`) instead of running into the timeout. So does a
``ProgressDeadlineExceeded`` condition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kferry.doctor.pulls import pull_failures
from kferry.kube.client import Kube, KubeError
from kferry.objref import object_ref

POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Rollout:
    """One Deployment's outcome: ``available``, ``failed`` (with why and the fix) or
    ``timeout``."""

    ref: str  # Deployment/NAMESPACE/NAME
    outcome: str
    message: str = ""
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "object": self.ref,
            "outcome": self.outcome,
            "message": self.message,
            "fix": self.fix,
        }


def _selector(deployment: dict[str, Any]) -> str:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _available(deployment: dict[str, Any]) -> tuple[bool, str]:
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    meta = deployment.get("metadata") or {}
    if int(status.get("observedGeneration", 0)) < int(meta.get("generation", 1)):
        return False, "waiting for the controller"
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    done = updated >= want and available >= want and total <= updated
    return done, f"{available}/{want} available"


def _stalled(deployment: dict[str, Any]) -> str | None:
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == (
            "ProgressDeadlineExceeded"
        ):
            return str(condition.get("message") or "ProgressDeadlineExceeded")
    return None


def wait_deployments(
    kube: Kube,
    deployments: Sequence[tuple[str, str]],
    *,
    timeout: float,
    registry: str | None = None,
    report: Callable[[str, str], None] | None = None,
) -> list[Rollout]:
    """Wait until each ``(namespace, name)`` Deployment is available, one fails to pull, or
    ``timeout`` passes. ``report(ref, state)`` is called whenever a Deployment's state
    changes (progress)."""
    deadline = time.monotonic() + timeout
    pending = {object_ref("Deployment", ns, name): (ns, name) for ns, name in deployments}
    last: dict[str, str] = {}
    done: dict[str, Rollout] = {}
    while pending:
        for ref, (ns, name) in list(pending.items()):
            path = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
            try:
                deployment = kube.get(path)
            except KubeError as exc:
                deployment, state = None, f"cannot read it: {exc}"
            if deployment is None:
                state = "not found"
                ok = False
            else:
                ok, state = _available(deployment)
            if ok:
                done[ref] = Rollout(ref, "available", state)
                del pending[ref]
                if report:
                    report(ref, "available")
                continue
            if deployment is not None:
                stalled = _stalled(deployment)
                if stalled:
                    done[ref] = Rollout(ref, "failed", stalled, "kubectl describe " + ref)
                    del pending[ref]
                    if report:
                        report(ref, "failed")
                    continue
                selector = _selector(deployment)
                pods = (
                    kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)
                    if selector
                    else None
                ) or {}
                items = pods.get("items") or []
                findings = list(pull_failures(items, registry))
                if findings:
                    first = findings[0]
                    done[ref] = Rollout(ref, "failed", first.finding, first.fix)
                    del pending[ref]
                    if report:
                        report(ref, "failed")
                    continue
            if report and last.get(ref) != state:
                report(ref, state)
            last[ref] = state
        if not pending:
            break
        if time.monotonic() > deadline:
            for ref in pending:
                done[ref] = Rollout(
                    ref, "timeout", f"not available within {timeout:.0f} s ({last.get(ref, '')})"
                )
            break
        time.sleep(POLL_SECONDS)
    order = [object_ref("Deployment", ns, name) for ns, name in deployments]
    return [done[ref] for ref in order if ref in done]


def deployments_of(
    objects: Sequence[dict[str, Any]], default_namespace: str
) -> list[tuple[str, str]]:
    """The ``(namespace, name)`` of every Deployment among applied objects."""
    out = []
    for obj in objects:
        if obj.get("kind") == "Deployment" and str(obj.get("apiVersion", "")).startswith("apps/"):
            meta = obj.get("metadata") or {}
            out.append((str(meta.get("namespace") or default_namespace), str(meta.get("name"))))
    return out


__all__ = ["Rollout", "deployments_of", "wait_deployments"]
