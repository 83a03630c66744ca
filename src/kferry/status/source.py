"""Where InferenceService objects come from: the pluggable data sources of ``kferry status``.

A source is either

- a **read**: ``() -> list[object dict]``, one look (a file, or one LIST call to the API
  server), or
- a **snapshot stream**: an iterable of successive ``list[object dict]``, one per look (polling
  the API server, or a watch re-emitting the current list on every event). ``--wait`` and
  ``--watch`` consume it; the stream must yield at least every few seconds, or the timeout is
  only checked when it does.

:func:`polling` turns a read into a snapshot stream. The cluster integration implements
:func:`cluster_read` (and, if it can watch, :func:`cluster_snapshots`) for a
:class:`Selector`; everything else, the selection of NAME and the namespace included, already
works on the dicts they return.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kferry.errors import InputError

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


NOT_IMPLEMENTED = (
    "cluster access not implemented yet; read the InferenceServices with kubectl and pass "
    "them with -f: kubectl get inferenceservices -A -o json | kferry status -f -"
)


def cluster_read(selector: Selector) -> Read:
    """A read of the InferenceServices the selector names, from the API server.

    To be implemented by the cluster integration: list ``inferenceservices`` in
    ``serving.kserve.io/v1beta1`` (falling back to ``serving.kubeflow.org/v1beta1`` and
    ``v1alpha2``), in ``selector.namespace``, every namespace for ``all_namespaces``, or the
    kubeconfig context's namespace; return the object dicts (the ``items`` of the List).
    """
    raise InputError(NOT_IMPLEMENTED)


def cluster_snapshots(selector: Selector, interval: float = DEFAULT_POLL_INTERVAL) -> Snapshots:
    """Successive snapshots from the API server; polling :func:`cluster_read` until a watch
    exists."""
    return polling(cluster_read(selector), interval)
