"""Source reference -> target reference under ``--to REGISTRY[:PORT]/PROJECT``.

Layouts:

* ``keep`` (default): ``REG/PROJECT/<source host>/<source path>``;
* ``drop-host``: ``REG/PROJECT/<source path>``;
* ``flat``: ``REG/PROJECT/<name>``, one level below the project, for registries that allow no
  deeper paths. ``<name>`` joins the host and path components with ``__``; a ``:`` in the host
  (a port) becomes ``_`` (hosts cannot contain ``_``), so the name can be turned back into the
  source (:func:`unflatten`). A source whose path already holds ``__`` cannot be flattened
  reversibly and is refused.

A host is lower-cased and its port becomes a valid path component (``127.0.0.1:5001`` ->
``127.0.0.1-5001`` under ``keep``). Tags stay tags and digests stay digests. Two sources that
would land on the same target are an error naming both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from kferry.errors import InputError
from kferry.name import InvalidReference, Reference, parse

_COMPONENT_BAD = re.compile(r"[^a-z0-9._-]+")
_EDGE = re.compile(r"^[._-]+|[._-]+$")
_SEPARATOR_RUN = re.compile(r"[._-]{2,}")


class PlanError(InputError):
    """A target that cannot be planned (bad --to, collision, irreversible flat name)."""


class Layout(StrEnum):
    """How a source repository is named below the project (see the module docstring)."""

    KEEP = "keep"
    DROP_HOST = "drop-host"
    FLAT = "flat"


LAYOUTS = tuple(layout.value for layout in Layout)


@dataclass(frozen=True, slots=True)
class Target:
    """Where images go: ``--to`` (a registry host with port and a project path below it,
    which may be empty) and ``--layout``, how each source is named there."""

    registry: str
    project: str
    layout: Layout = Layout.KEEP

    @classmethod
    def parse(cls, text: str, layout: Layout | str = Layout.KEEP) -> Target:
        raw = text.strip().rstrip("/")
        for scheme in ("https://", "http://"):
            if raw.startswith(scheme):
                raw = raw[len(scheme) :]
        registry, _, project = raw.partition("/")
        if not registry:
            raise PlanError(f"--to {text!r}: expected REGISTRY[:PORT]/PROJECT")
        try:
            probe = parse(f"{registry}/{project or 'x'}/x" if project else f"{registry}/x")
        except InvalidReference as exc:
            raise PlanError(f"--to {text!r}: {exc.reason}") from None
        if probe.domain != registry:
            raise PlanError(
                f"--to {text!r}: {registry!r} is not a registry host (give HOST[:PORT]/PROJECT)"
            )
        try:
            return cls(registry, project, Layout(layout))
        except ValueError:
            raise PlanError(
                f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})"
            ) from None

    def __str__(self) -> str:
        return f"{self.registry}/{self.project}" if self.project else self.registry


@dataclass(frozen=True, slots=True)
class Planned:
    source: Reference
    target: Reference

    def to_json(self) -> dict[str, str]:
        return {"source": self.source.canonical, "target": self.target.canonical}


def host_component(host: str) -> str:
    """A registry host as one valid path component: ``127.0.0.1:5001`` -> ``127.0.0.1-5001``."""
    text = _COMPONENT_BAD.sub("-", host.lower())
    text = _SEPARATOR_RUN.sub(lambda m: "-" if "-" in m.group(0) else m.group(0)[0], text)
    return _EDGE.sub("", text) or "registry"


def flat_name(source: Reference) -> str:
    """The reversible one-level name of ``source`` (see module docstring)."""
    if "__" in source.path:
        raise PlanError(
            f"{source.canonical}: cannot flatten reversibly (its path holds '__'); "
            "use --layout keep or drop-host"
        )
    host = source.domain.lower().replace(":", "_").replace("[", "").replace("]", "")
    return "__".join([host, *source.path.split("/")])


def unflatten(name: str) -> str:
    """Inverse of :func:`flat_name` (without tag or digest)."""
    host, *path = name.split("__")
    head, sep, port = host.rpartition("_")
    host = f"{head}:{port}" if sep else host
    return "/".join([host, *path])


def plan_one(source: Reference, to: Target) -> Reference:
    prefix = [to.project] if to.project else []
    if to.layout is Layout.KEEP:
        path = "/".join([*prefix, host_component(source.domain), source.path])
    elif to.layout is Layout.DROP_HOST:
        path = "/".join([*prefix, source.path])
    else:
        path = "/".join([*prefix, flat_name(source)])
    text = f"{to.registry}/{path}"
    try:
        target = parse(text)
    except InvalidReference as exc:
        raise PlanError(f"{source.canonical} -> {text}: {exc.reason}") from None
    return Reference(target.domain, target.path, source.tag, source.digest)


def plan(sources: Iterable[Reference], to: Target) -> list[Planned]:
    """Plan every source (deduplicated, in order); collisions are an error naming both."""
    out: list[Planned] = []
    seen: dict[str, Reference] = {}
    by_target: dict[str, Reference] = {}
    for source in sources:
        if source.canonical in seen:
            continue
        seen[source.canonical] = source
        target = plan_one(source, to)
        other = by_target.get(target.repository)
        if other is not None and other.repository != source.repository:
            raise PlanError(
                f"layout {to.layout}: {other.repository} and {source.repository} would both be "
                f"mirrored to {target.repository}; use --layout keep"
            )
        by_target[target.repository] = source
        out.append(Planned(source, target))
    return out
