"""Which kinds the API server serves, and under which plural and scope.

Manifests name kinds (``Deployment``, ``Certificate``); REST paths need plurals and whether
the resource is namespaced. The answer comes from the server's discovery documents
(``/api/v1`` and ``/apis/<group>/<version>``), refreshed when CRDs have just registered.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kferry.kube.client import Kube, KubeError


@dataclass(frozen=True)
class Resource:
    api_version: str  # "v1" or "group/version"
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class Discovery:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._by_kind: dict[tuple[str, str], Resource] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        versions = ["v1"]
        groups = self.kube.get("/apis") or {}
        for g in groups.get("groups") or []:
            versions += [v["groupVersion"] for v in g.get("versions") or []]
        with ThreadPoolExecutor(8) as pool:
            docs = list(pool.map(self._fetch, versions))
        found: dict[tuple[str, str], Resource] = {}
        for version, doc in zip(versions, docs, strict=True):
            for r in doc.get("resources") or []:
                name = str(r["name"])
                if "/" in name:
                    continue
                found[(version, str(r["kind"]))] = Resource(
                    version, str(r["kind"]), name, bool(r.get("namespaced"))
                )
        with self._lock:
            self._by_kind = found

    def _fetch(self, version: str) -> dict[str, Any]:
        path = "/api/v1" if version == "v1" else f"/apis/{version}"
        try:
            return self.kube.get(path) or {}
        except KubeError:
            return {}  # an aggregated API that is down must not stop everything else

    def find(self, api_version: str, kind: str) -> Resource | None:
        with self._lock:
            return self._by_kind.get((api_version, kind))

    def core_v1(self) -> dict[str, Any]:
        return self._fetch("v1")
