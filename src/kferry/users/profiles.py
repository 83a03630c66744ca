"""Kubeflow ``Profile`` objects: the version the cluster serves, listing, create, delete.

Kubeflow 1.4 manifests write ``kubeflow.org/v1beta1``, later releases ``v1``; the CRD of every
shipped release serves both. Discovery decides: ``v1`` when served, else ``v1beta1``, else the
group's preferred version. Profiles are cluster-scoped; Kubeflow's profile controller makes a
namespace of the same name, owned by the Profile (so it goes when the Profile goes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kferry.errors import KferryError
from kferry.kube import Kube, KubeError

GROUP = "kubeflow.org"
KIND = "Profile"
PREFERRED = ("v1", "v1beta1")

Obj = dict[str, Any]


def choose_version(served: Sequence[str], preferred: str | None = None) -> str | None:
    """Among the versions that serve Profiles: v1, then v1beta1, then the group's preferred."""
    for version in PREFERRED:
        if version in served:
            return version
    if preferred in served:
        return preferred
    return served[0] if served else None


@dataclass(frozen=True)
class Profiles:
    """The Profile resource as this cluster serves it."""

    kube: Kube
    version: str  # "v1"
    plural: str = "profiles"

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{self.version}"

    def path(self, name: str | None = None) -> str:
        base = f"/apis/{GROUP}/{self.version}/{self.plural}"
        return f"{base}/{name}" if name else base

    @classmethod
    def discover(cls, kube: Kube) -> Profiles:
        group = kube.get(f"/apis/{GROUP}") or {}
        versions = [str(v.get("version")) for v in group.get("versions") or []]
        preferred = (group.get("preferredVersion") or {}).get("version")
        plurals: dict[str, str] = {}
        for version in versions:
            doc = kube.get(f"/apis/{GROUP}/{version}") or {}
            for resource in doc.get("resources") or []:
                name = str(resource.get("name", ""))
                if resource.get("kind") == KIND and "/" not in name:
                    plurals[version] = name
        chosen = choose_version([v for v in versions if v in plurals], preferred)
        if chosen is None:
            raise KferryError(
                f"the cluster serves no {KIND} kind ({GROUP}): is Kubeflow's profile "
                "controller (its CRD profiles.kubeflow.org) installed?"
            )
        return cls(kube, chosen, plurals[chosen])

    def get(self, name: str) -> Obj | None:
        return self.kube.get(self.path(name))

    def all(self) -> list[Obj]:
        items: list[Obj] = (self.kube.get(self.path()) or {}).get("items") or []
        return sorted(items, key=lambda p: str(p["metadata"]["name"]))

    def owned_by(self, email: str) -> list[Obj]:
        return [p for p in self.all() if owner_of(p) == email]

    def create(self, name: str, email: str) -> Obj:
        body = {
            "apiVersion": self.api_version,
            "kind": KIND,
            "metadata": {"name": name},
            "spec": {"owner": {"kind": "User", "name": email}},
        }
        created: Obj = self.kube.request("POST", self.path(), body=body).json()
        return created

    def delete(self, name: str) -> bool:
        """Delete (background propagation: the namespace it owns follows); False if absent."""
        try:
            self.kube.request(
                "DELETE",
                self.path(name),
                params={"propagationPolicy": "Background"},
                ok=(200, 202),
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def owner_of(profile: Obj) -> str | None:
    owner = (profile.get("spec") or {}).get("owner") or {}
    if owner.get("kind", "User") != "User":
        return None
    name = owner.get("name")
    return str(name) if name else None
