"""Where InferenceService objects come from: the pluggable data sources of ``kferry status``.

A source is either

- a **read**: ``() -> list[object dict]``, one look (a file, or one LIST call to the API
  server), or
- a **snapshot stream**: an iterable of successive ``list[object dict]``, one per look (polling
  the API server, or a watch re-emitting the current list on every event). ``--wait`` and
  ``--watch`` consume it; the stream must yield at least every few seconds, or the timeout is
  only checked when it does.

:func:`polling` turns a read into a snapshot stream; :func:`cluster_read` lists the
InferenceServices from the API server and :func:`cluster_snapshots` polls it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kferry.errors import KferryError
from kferry.kube import Discovery, Kube

Obj = Mapping[str, Any]
Read = Callable[[], Sequence[Obj]]
Snapshots = Iterable[Sequence[Obj]]

DEFAULT_POLL_INTERVAL = 2.0


@dataclass(frozen=True, slots=True)
class Selector:
    """Which InferenceServices: ``name`` (None = all) in ``namespace`` (None = all namespaces
    when ``all_namespaces``, else the current one: for files, every namespace in the file)."""

    name: str | None = None
    namespace: str | None = None
    all_namespaces: bool = False

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        if self.name is not None and str(meta.get("name") or "") != self.name:
            return False
        return self.namespace is None or str(meta.get("namespace") or "") == self.namespace

    def describe(self) -> str:
        what = f"InferenceService {self.name!r}" if self.name else "InferenceServices"
        return f"{what} in namespace {self.namespace!r}" if self.namespace else what


def select(objects: Iterable[Obj], selector: Selector) -> list[Obj]:
    return [obj for obj in objects if selector.matches(obj)]


def polling(
    read: Read,
    interval: float = DEFAULT_POLL_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Sequence[Obj]]:
    """Endless snapshots: ``read()``, then ``sleep(interval)``, again."""
    while True:
        yield read()
        sleep(interval)


# Served InferenceService versions, newest first (KServe, then KFServing of Kubeflow <= 1.4).
ISVC_VERSIONS = (
    "serving.kserve.io/v1beta1",
    "serving.kubeflow.org/v1beta1",
    "serving.kubeflow.org/v1alpha2",
)


def cluster_read(selector: Selector, kube: Kube) -> Read:
    """A read of the InferenceServices the selector names, from the API server: every served
    version's ``inferenceservices`` in ``selector.namespace``, every namespace for
    ``all_namespaces``, else the kubeconfig context's namespace."""
    discovery = Discovery(kube)
    discovery.refresh()
    resources = [r for v in ISVC_VERSIONS if (r := discovery.find(v, "InferenceService"))]
    if not resources:
        raise KferryError(
            f"{kube.server} serves no InferenceService kind (is KServe or KFServing installed?)"
        )
    namespace = None if selector.all_namespaces else (selector.namespace or kube.namespace)

    def read() -> list[Obj]:
        items: list[Obj] = []
        for res in resources:
            data = kube.get(res.path(namespace)) or {}
            for item in data.get("items") or []:
                items.append({"apiVersion": res.api_version, "kind": res.kind, **item})
        return items

    return read


def cluster_snapshots(
    selector: Selector, kube: Kube, interval: float = DEFAULT_POLL_INTERVAL
) -> Snapshots:
    """Successive snapshots from the API server (a LIST every ``interval`` seconds)."""
    return polling(cluster_read(selector, kube), interval)
