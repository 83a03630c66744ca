"""What discovery reports: findings (one per place an image is named) and images (grouped)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import yaml

from kferry.name import Reference

if TYPE_CHECKING:
    from kferry.load.documents import KubeObject

How = Literal["field", "string", "composed", "default"]


@dataclass(frozen=True, slots=True)
class Part:
    """Where the bytes of (part of) a reference live, for the rewrite stage.

    ``node`` is the YAML scalar holding the text. ``embedded`` is the chain of string
    documents between the object and that scalar: each entry is ``(format, scalar)`` where
    ``scalar`` is the outer node whose *value* was parsed as ``format`` (``json``/``yaml``)
    and ``node`` belongs to the innermost parse. ``span`` is the slice of the scalar's value
    that holds the text (``None`` = the whole value), e.g. the value of ``--flag=value``.
    ``role`` names the part of a composed image (``hub``, ``image``, ``tag``), else ``ref``.
    """

    node: yaml.ScalarNode
    embedded: tuple[tuple[str, yaml.ScalarNode], ...] = ()
    span: tuple[int, int] | None = None
    role: str = "ref"


@dataclass(frozen=True, slots=True)
class Location:
    """One place an image is named: ``object`` is ``Kind/namespace/name``."""

    object: str
    path: str
    how: How
    optional: str | None = None  # reason, when only an optional feature needs it
    note: str | None = None
    parts: tuple[Part, ...] = field(default=(), compare=False, repr=False)
    owner: KubeObject | None = field(default=None, compare=False, repr=False)
    # compiled defaults of a version no catalog rule covers: the rule assumed instead
    assumed: bool = False
    rule_version: str | None = None

    def to_json(self) -> dict[str, str | bool | None]:
        out: dict[str, str | bool | None] = {
            "object": self.object,
            "path": self.path,
            "how": self.how,
        }
        if self.assumed:
            out["assumed"] = True
            out["rule_version"] = self.rule_version
        return out


@dataclass(frozen=True, slots=True)
class Override:
    """How manifests can replace a compiled-in default: an env var or a flag on a container."""

    kind: Literal["env", "arg"]
    name: str
    container: yaml.MappingNode = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Finding:
    """A reference as written at one location (``reference`` is ``None`` when invalid)."""

    written: str
    reference: Reference | None
    location: Location
    error: str | None = None
    override: Override | None = None  # compiled defaults: where an image can be set instead
    ignored_override: str | None = None  # an override this controller version does not read


@dataclass(slots=True)
class Image:
    """One canonical image with every spelling and location it was found at."""

    reference: Reference
    written: list[str] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)

    @property
    def canonical(self) -> str:
        return self.reference.canonical

    @property
    def optional(self) -> bool:
        """True when every location that needs it is an optional feature."""
        return all(loc.optional for loc in self.locations)

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.canonical,
            "written": list(self.written),
            "optional": self.optional,
            "locations": [loc.to_json() for loc in self.locations],
        }


@dataclass(frozen=True, slots=True)
class Assumption:
    """A known component at a version no catalog rule covers (said on stderr, never silent).

    ``rule_version`` is the newest version of the rule assumed (the nearest older known one,
    or the newest known when the version cannot be placed), ``None`` when no rule is older.
    """

    component: str
    object: str
    seen: str
    placed: str  # "tag": a version; "unplaced": a commit or tag not on the release line
    rule_version: str | None
    images: tuple[str, ...]

    def message(self) -> str:
        if self.rule_version is None:
            assumed = "no rule is older, so kferry assumes it pulls no compiled-in default"
        elif self.placed == "unplaced":
            assumed = (
                f"the tag is not on the catalog's release line; assuming the rules of "
                f"{self.rule_version}, the newest known"
            )
        else:
            assumed = f"assuming the rules of {self.rule_version}, the nearest older known"
        adds = ", ".join(self.images) if self.images else "no image"
        return (
            f"{self.component} {self.seen} ({self.object}): no catalog rule covers this "
            f"version; {assumed}; adds {adds}; kferry mirror-config covers them either way "
            "(add a rule with --catalog FILE)"
        )


@dataclass(slots=True)
class Inventory:
    """The result of discovery: images (sorted by canonical name) and problems found."""

    images: list[Image]
    problems: list[Finding]
    notes: list[str] = field(default_factory=list)
    assumptions: list[Assumption] = field(default_factory=list)
