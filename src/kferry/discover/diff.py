"""What an upgrade adds: the images of two inputs compared (``kferry images --diff OLD NEW``).

The identity of an image is its canonical reference (:mod:`kferry.name.reference`): two
spellings of one reference are the same image. An image of OLD that NEW lacks is *removed*, one
of NEW that OLD lacks is *added*, unless the other side holds the same repository with another
tag or digest: then the pair is *changed* (``istio/proxyv2:1.9.6`` -> ``:1.22.1`` is one change,
not an addition and a removal). When a repository has several references on a side that the
other lacks, those named in the same object are paired first (``Deployment/kubeflow/katib-mysql``
moved from ``mysql:8.0.29`` to ``mysql:8.0``), the rest in version order (``v0.8`` before
``v0.13``), and the references left over on the longer side count as added or removed.

A lock file records what was copied, not where an image is used: its side has no locations
(``Side.located`` is false and the JSON says ``"locations": null``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from kferry.discover.model import Image
from kferry.name import Reference

SideKind = Literal["render", "lock"]


@dataclass(frozen=True, slots=True)
class Side:
    """One input of a diff: its name as given, what it was read as, and its images."""

    name: str
    kind: SideKind
    images: tuple[Image, ...]

    @property
    def located(self) -> bool:
        """Whether the images carry where they are used (a lock file does not know)."""
        return self.kind == "render"

    def to_json(self) -> dict[str, object]:
        return {"input": self.name, "kind": self.kind, "images": len(self.images)}


@dataclass(frozen=True, slots=True)
class Change:
    """Same repository, another tag or digest."""

    old: Image
    new: Image

    @property
    def repository(self) -> str:
        return self.new.reference.repository


@dataclass(frozen=True, slots=True)
class ImageDiff:
    old: Side
    new: Side
    added: tuple[Image, ...]
    removed: tuple[Image, ...]
    changed: tuple[Change, ...]
    unchanged: int

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_carry(self) -> list[str]:
        """What NEW needs that OLD did not have: the added images and the new side of changes."""
        refs = [i.canonical for i in self.added] + [c.new.canonical for c in self.changed]
        return sorted(refs)

    def to_json(self) -> dict[str, object]:
        def locations(image: Image, side: Side) -> list[dict[str, Any]] | None:
            return [loc.to_json() for loc in image.locations] if side.located else None

        def entry(image: Image, side: Side) -> dict[str, object]:
            return {
                "image": image.canonical,
                "optional": image.optional if side.located else None,
                "locations": locations(image, side),
            }

        return {
            "old": self.old.to_json(),
            "new": self.new.to_json(),
            "added": [entry(i, self.new) for i in self.added],
            "removed": [entry(i, self.old) for i in self.removed],
            "changed": [
                {
                    "repository": c.repository,
                    "old": c.old.canonical,
                    "new": c.new.canonical,
                    "optional": c.new.optional if self.new.located else None,
                    "locations": locations(c.new, self.new),
                    "old_locations": locations(c.old, self.old),
                }
                for c in self.changed
            ],
            "unchanged": self.unchanged,
        }


def lock_side(name: str, sources: Iterable[Reference]) -> Side:
    """A lock file's images: its source references (what was carried), without locations."""
    images: dict[str, Image] = {}
    for ref in sources:
        images.setdefault(ref.canonical, Image(ref, written=[ref.canonical]))
    return Side(name, "lock", tuple(images[k] for k in sorted(images)))


def render_side(name: str, images: Iterable[Image]) -> Side:
    return Side(name, "render", tuple(sorted(images, key=lambda i: i.canonical)))


_NUMBER = re.compile(r"(\d+)")


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _NUMBER.split(text) if part
    )


def _version_key(image: Image) -> tuple[tuple[tuple[int, int | str], ...], str]:
    """Natural order of the tag, then the digest: ``v0.8.0`` < ``v0.13.1`` < ``v0.13.1-gpu``."""
    ref = image.reference
    return _natural(ref.tag or ""), ref.digest or ""


def _pairs(olds: list[Image], news: list[Image]) -> list[tuple[Image | None, Image | None]]:
    """Old and new references of one repository paired: first those named in the same object
    (the Deployment whose image moved on), then the rest in version order; the surplus alone."""
    out: list[tuple[Image | None, Image | None]] = []
    olds, news = list(olds), list(news)
    for o in list(olds):
        where = {loc.object for loc in o.locations}
        match = next((n for n in news if where & {loc.object for loc in n.locations}), None)
        if match is not None:
            out.append((o, match))
            olds.remove(o)
            news.remove(match)
    pairs = min(len(olds), len(news))
    out.extend(zip(olds[:pairs], news[:pairs], strict=True))
    out.extend((o, None) for o in olds[pairs:])
    out.extend((None, n) for n in news[pairs:])
    return out


def diff_images(old: Side, new: Side) -> ImageDiff:
    """Compare two sides by canonical reference, pairing changes within a repository."""
    old_by = {i.canonical: i for i in old.images}
    new_by = {i.canonical: i for i in new.images}
    gone: dict[str, list[Image]] = defaultdict(list)
    came: dict[str, list[Image]] = defaultdict(list)
    for key, image in old_by.items():
        if key not in new_by:
            gone[image.reference.repository].append(image)
    for key, image in new_by.items():
        if key not in old_by:
            came[image.reference.repository].append(image)
    added: list[Image] = []
    removed: list[Image] = []
    changed: list[Change] = []
    for repository in sorted(gone.keys() | came.keys()):
        olds = sorted(gone.get(repository, []), key=_version_key)
        news = sorted(came.get(repository, []), key=_version_key)
        for o, n in _pairs(olds, news):
            if o is not None and n is not None:
                changed.append(Change(o, n))
            elif o is not None:
                removed.append(o)
            elif n is not None:
                added.append(n)
    return ImageDiff(
        old=old,
        new=new,
        added=tuple(sorted(added, key=lambda i: i.canonical)),
        removed=tuple(sorted(removed, key=lambda i: i.canonical)),
        changed=tuple(changed),
        unchanged=len(old_by.keys() & new_by.keys()),
    )
