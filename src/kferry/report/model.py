"""What a transfer report says: images grouped by component, with sizes, digests and state.

Typed values only; :mod:`kferry.report.measure` fills in sizes and registry state, and
:mod:`kferry.report.render` turns a :class:`Report` into HTML or Markdown.

Components are derived from the object that needs an image, by data and not by code:
the first of :data:`COMPONENT_LABELS` set on the object (``--component-label`` replaces the
list), else its namespace, else ``cluster-scoped``. An image named by several objects belongs
to the component of its first non-optional use (its first use when all are optional); the
others are listed as "also used by".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from kferry.discover.model import Image, Location
from kferry.load.documents import mapping_get, scalar_str
from kferry.name import Reference

# Labels read, in this order, to name the component an object belongs to (Kubernetes'
# recommended part-of label, the application id KFP sets, kustomize's component label).
COMPONENT_LABELS: tuple[str, ...] = (
    "app.kubernetes.io/part-of",
    "application-crd-id",
    "kustomize.component",
)

Presence = Literal["present", "other-digest", "missing", "unknown"]


@dataclass(frozen=True, slots=True)
class Use:
    """One place an image is named, as a reader of the report needs it."""

    component: str
    object: str
    path: str
    how: str  # field, string, composed, default
    optional: str | None = None


@dataclass(frozen=True, slots=True)
class PlatformSize:
    platform: str  # "linux/amd64", or "single" for an image without an index
    digest: str
    size: int  # manifest + config + layers


@dataclass(slots=True)
class Row:
    """One image of the report."""

    image: str
    component: str
    uses: list[Use]
    reference: Reference
    digest: str | None = None  # of the top manifest (index or image)
    media_type: str | None = None
    size: int | None = None  # distinct bytes over the chosen platforms; None = unknown
    platforms: list[PlatformSize] = field(default_factory=list)
    unknown: str | None = None  # why the size is unknown
    target: str | None = None  # where `kferry plan` puts it (with --registry)
    presence: Presence | None = None  # None without --registry
    presence_note: str | None = None

    @property
    def optional(self) -> bool:
        return all(u.optional for u in self.uses)

    @property
    def also(self) -> list[str]:
        return sorted({u.component for u in self.uses} - {self.component})


@dataclass(slots=True)
class Group:
    component: str
    rows: list[Row]

    @property
    def size(self) -> int:
        return sum(r.size or 0 for r in self.rows)

    @property
    def unknown(self) -> int:
        return sum(1 for r in self.rows if r.size is None)


@dataclass(slots=True)
class Report:
    rows: list[Row]
    sources: list[str]
    platforms: tuple[str, ...] = ()
    registry: str | None = None
    layout: str = "keep"
    generated: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def groups(self) -> list[Group]:
        by: dict[str, list[Row]] = {}
        for r in self.rows:
            by.setdefault(r.component, []).append(r)
        groups = [Group(c, sorted(rs, key=lambda r: r.image)) for c, rs in by.items()]
        return sorted(groups, key=lambda g: (-g.size, g.component))

    @property
    def total(self) -> int:
        return sum(r.size or 0 for r in self.rows)

    @property
    def unknown(self) -> int:
        return sum(1 for r in self.rows if r.size is None)

    @property
    def optional(self) -> int:
        return sum(1 for r in self.rows if r.optional)

    def count(self, presence: Presence) -> int:
        return sum(1 for r in self.rows if r.presence == presence)


def component_of(loc: Location, labels: Sequence[str] = COMPONENT_LABELS) -> str:
    """The component of the object behind a location (see module docstring)."""
    owner = loc.owner
    if owner is None:
        parts = loc.object.split("/")
        return parts[1] if len(parts) >= 3 and parts[1] else "cluster-scoped"
    found = mapping_get(mapping_get(owner.node, "metadata"), "labels")
    for key in labels:
        value = scalar_str(mapping_get(found, key))
        if value:
            return value.strip()
    return owner.namespace or "cluster-scoped"


def rows_of(images: Sequence[Image], labels: Sequence[str] = COMPONENT_LABELS) -> list[Row]:
    """One row per discovered image, its component chosen as the module docstring says."""
    rows = []
    for img in images:
        uses = [
            Use(component_of(loc, labels), loc.object, loc.path, loc.how, loc.optional)
            for loc in img.locations
        ]
        needed = [u for u in uses if not u.optional] or uses
        component = needed[0].component if needed else "unknown"
        rows.append(Row(img.canonical, component, uses, img.reference))
    return rows
