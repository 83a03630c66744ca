"""Image pull failures on the nodes, explained from what kubelet and the container runtime
said (the container status' ``waiting.message``), one finding per failing container, each
with the fix for that cause.

The causes are those of the field report, matched on the messages a real kubelet v1.37 with
containerd 1.6 writes (recorded in tests/test_node_pulls.py, which reproduces each one):

* a name without registry host (``tensorflow/serving:1.14.0``): the runtime expands it to
  ``docker.io/...`` and goes to Docker Hub, which an air-gapped node cannot reach (P7);
* ``x509: certificate signed by unknown authority``: the node does not trust the private
  registry's CA (P7's second error);
* ``401 Unauthorized``: the pod has no pull secret for the registry, or the one it names is
  refused;
* ``not found``: the image is not in the mirror (with the ``kferry mirror`` command that
  copies it, its source read from the lock file or from the ``keep`` layout's path);
* connection refused / no such host / i/o timeout: the node cannot reach the registry.

Hand-written: these are facts about other programs' messages; no library classifies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kferry.doctor.checks import PULL_ERRORS, Finding
from kferry.name import try_parse
from kferry.objref import ref_of
from kferry.plan.lock import Lock

_HOST_PART = re.compile(r"^(?:localhost|[^/]*[.:][^/]*)(?:/|$)")
_X509 = re.compile(r"x509:|certificate signed by unknown authority|tls: ", re.I)
_AUTH = re.compile(
    r"401 Unauthorized|authorization failed|no basic auth credentials|403 Forbidden|denied", re.I
)
_NOT_FOUND = re.compile(r": not found|manifest unknown|name unknown|404 Not Found", re.I)
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|context deadline exceeded|network is unreachable",
    re.I,
)


def has_host(image: str) -> bool:
    """The reference names its registry (its first component has a dot or a port, or is
    localhost), as containerd and docker decide."""
    return bool(_HOST_PART.match(image))


def _source_of(image: str, registry: str | None, lock: Mapping[str, str]) -> str | None:
    """Where a private-registry image came from: the lock file's entry, else the ``keep``
    layout's path (``REG/PROJECT/<host>/<path>``)."""
    ref = try_parse(image)
    if ref is None:
        return None
    if ref.canonical in lock:
        return lock[ref.canonical]
    plain = f"{ref.domain}/{ref.path}"
    prefix = (registry.rstrip("/") + "/") if registry else f"{ref.domain}/"
    if not plain.startswith(prefix):
        return None
    rest = plain[len(prefix) :]
    if registry is None:
        rest = rest.partition("/")[2]  # the project
    host, _, path = rest.partition("/")
    if "." not in host or not path:
        return None
    suffix = f"@{ref.digest}" if ref.digest else f":{ref.tag or 'latest'}"
    return f"{host}/{path}{suffix}"


def lock_targets(lock: Lock) -> dict[str, str]:
    """Canonical target reference (by tag and by digest) -> canonical source, from a lock
    (:func:`kferry.plan.read_lock`)."""
    out: dict[str, str] = {}
    for source, entry in lock.items():
        out[entry.target.canonical] = source
        out[f"{entry.target.domain}/{entry.target.path}@{entry.digest}"] = source
    return out


def _project_of(image: str) -> str:
    ref = try_parse(image)
    if ref is None:
        return "REGISTRY/PROJECT"
    return f"{ref.domain}/{ref.path.partition('/')[0]}"


def explain(
    image: str,
    message: str,
    pod: Mapping[str, Any],
    registry: str | None,
    lock: Mapping[str, str],
) -> tuple[str, str]:
    """``(what it means, what to do)`` for one failed pull."""
    ref = try_parse(image)
    host = ref.domain if ref is not None else image.partition("/")[0]
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    secrets = [
        str(s.get("name"))
        for s in ((pod.get("spec") or {}).get("imagePullSecrets") or [])
        if s.get("name")
    ]
    to = registry or "REGISTRY/PROJECT"
    if not has_host(image):
        return (
            f"{image} names no registry, so the node pulls it from Docker Hub "
            f"(docker.io/{ref.path if ref else image}), which it cannot reach",
            f"give it the private registry's full host: kferry rewrite --to {to} (or "
            "kferry mirror-config for docker.io on the nodes)",
        )
    if _X509.search(message):
        return (
            f"the node does not trust the TLS certificate of {host}",
            f"install {host}'s CA on every node (the system trust store, then restart "
            f'containerd; or ca = "/etc/containerd/certs.d/{host}/ca.crt" in that '
            f"directory's hosts.toml); for Knative services also kferry rewrite "
            "(knative-skip-tag-resolution)",
        )
    if _AUTH.search(message):
        if secrets:
            return (
                f"{host} refused the credentials of pull secret {', '.join(secrets)}",
                f"check the secret's user and password for {host} (kubectl -n {namespace} get "
                f"secret {secrets[0]} -o yaml)",
            )
        return (
            f"{host} asks for credentials and the pod has no pull secret",
            f"kubectl -n {namespace} create secret docker-registry NAME --docker-server={host} "
            f"--docker-username=USER --docker-password=...; kferry rewrite --fix "
            f"pull-secret=NAME",
        )
    if _NOT_FOUND.search(message):
        source = _source_of(image, registry, lock)
        where = registry or _project_of(image)
        command = (
            f"kferry mirror {source} --to {where}"
            if source
            else f"kferry mirror SOURCE-OF-{image} --to {where}"
        )
        return (f"{image} is not in the mirror", f"copy it: {command}")
    if _UNREACHABLE.search(message):
        return (
            f"the node cannot reach {host}",
            f"check the reference's registry host; for public names configure node mirrors "
            f"(kferry mirror-config --to {to})",
        )
    return ("the image could not be pulled", "see kubectl describe pod")


def pull_failures(
    pods: Iterable[dict[str, Any]],
    registry: str | None,
    lock: Mapping[str, str] | None = None,
) -> Iterator[Finding]:
    """One finding per container waiting on a failed pull. ``lock``: target reference ->
    source reference (from kferry's lock file), for the mirror command."""
    for pod in pods:
        status = pod.get("status") or {}
        spec = pod.get("spec") or {}
        spec_images = {
            str(c.get("name")): str(c.get("image") or "")
            for key in ("initContainers", "containers")
            for c in spec.get(key) or []
        }
        for cs in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        ):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason not in PULL_ERRORS:
                continue
            name = str(cs.get("name"))
            image = spec_images.get(name) or str(cs.get("image") or "")
            message = str(waiting.get("message") or "")
            meaning, fix = explain(image, message, pod, registry, lock or {})
            yield Finding(
                "error",
                ref_of(pod, "Pod"),
                f"{reason} for {image} in container {name}: {meaning} (kubelet: {message[:300]})",
                fix,
            )


__all__ = ["explain", "has_host", "lock_targets", "pull_failures"]
