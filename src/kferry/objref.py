"""The one way kferry names a Kubernetes object in messages: ``Kind/namespace/name``.

The namespace is empty for cluster-scoped objects (``ClusterRole//admin``). Every stage
(load's documents, doctor, status, apply, fix, users) formats through here, so a reference in
one command's output can be searched for in another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def object_ref(kind: str, namespace: str | None, name: str | None) -> str:
    """``Kind/namespace/name`` from its three parts (``None`` reads as empty)."""
    return f"{kind}/{namespace or ''}/{name or ''}"


def ref_of(obj: Mapping[str, Any], kind: str | None = None) -> str:
    """The reference of a plain-dict object (as the API server or ``as_dict`` gives it);
    ``kind`` overrides the object's own (lists whose items carry none)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return object_ref(str(kind or obj.get("kind") or ""), meta.get("namespace"), meta.get("name"))
