"""What a transfer will carry, from manifests alone: ``plan --size``, ``bundle save --dry-run``
and the choice of what a delta bundle holds.

An image is resolved the way the copier resolves it (top manifest, the platform filter, every
manifest below, the distributable blobs of each) without reading a blob. What the far side
already holds is a :class:`FarSide`: the target registry (HEAD requests), a previous bundle or
lock file (:mod:`kferry.transfer.delta`), or several of them. A manifest is carried unless the
far side holds the whole image under its name (a manifest cannot be mounted: it is PUT into
each repository with its bytes); a blob is carried unless the far side holds it somewhere it
can be mounted from. The bytes counted are exactly the files ``bundle save`` writes under
``blobs/`` (manifests and blobs, each digest once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from kferry.name import Reference
from kferry.plan import Target, plan_one
from kferry.transfer.copy import _filtered_index, descendants
from kferry.transfer.errors import RegistryError
from kferry.transfer.media import INDEX_TYPES, Descriptor, Manifest
from kferry.transfer.registry import Registries
from kferry.transfer.stores import ImageSource


@dataclass
class ImageParts:
    """One image as it will be copied: its manifests (top first) and distributable blobs."""

    source: Reference
    top: Manifest
    manifests: list[Manifest]
    blobs: dict[str, Descriptor]

    def sizes(self) -> dict[str, int]:
        out = {m.digest: m.size for m in self.manifests}
        for b in self.blobs.values():
            out.setdefault(b.digest, b.size)
        return out


def image_parts(source: ImageSource, ref: Reference, platforms: Sequence[str]) -> ImageParts:
    """The image as :class:`~kferry.transfer.copy.Copier` resolves it (same filter, same walk)."""
    top = source.get_manifest(ref)
    if ref.digest and top.digest != ref.digest:
        raise RegistryError(f"{ref.canonical}: source sent manifest {top.digest}")
    if platforms and top.media_type in INDEX_TYPES:
        top = _filtered_index(top, platforms, ref.canonical) or top
    manifests = [top, *descendants(source, ref, top)]
    blobs: dict[str, Descriptor] = {}
    for m in manifests:
        for b in m.blobs:
            if not b.foreign:
                blobs.setdefault(b.digest, b)
    return ImageParts(ref, top, manifests, blobs)


def resolve_all(
    source: ImageSource, refs: Sequence[Reference], platforms: Sequence[str], jobs: int = 8
) -> list[ImageParts]:
    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="kferry-size") as pool:
        return list(pool.map(lambda r: image_parts(source, r, platforms), refs))


class FarSide(Protocol):
    """What the far side (target registry, earlier bundle or lock) already holds."""

    def holds_image(self, name: Reference, digest: str) -> bool:
        """The image ``name`` is there with top manifest ``digest``."""
        ...

    def blob_home(self, name: Reference, digest: str) -> Reference | None:
        """An image (by source name) whose repository there holds blob ``digest``."""
        ...


class Nothing:
    """A far side that holds nothing (a full bundle)."""

    def holds_image(self, name: Reference, digest: str) -> bool:
        return False

    def blob_home(self, name: Reference, digest: str) -> Reference | None:
        return None


@dataclass
class KnownBase:
    """A far side known from a record: images by source name, blobs by digest (with the
    source name of an image holding each, and its size)."""

    images: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, tuple[Reference, int]] = field(default_factory=dict)

    def holds_image(self, name: Reference, digest: str) -> bool:
        return self.images.get(name.canonical) == digest

    def blob_home(self, name: Reference, digest: str) -> Reference | None:
        home = self.blobs.get(digest)
        return home[0] if home else None

    def add(self, parts: ImageParts) -> None:
        self.images[parts.source.canonical] = parts.top.digest
        for b in parts.blobs.values():
            self.blobs.setdefault(b.digest, (parts.source, b.size))


class RegistryFar:
    """The far side is a registry (``--to``, or ``--since REGISTRY/PROJECT``): each image is
    looked for where ``kferry plan`` puts it, each blob in that repository (HEAD only)."""

    def __init__(self, registries: Registries, target: Target) -> None:
        self.registries = registries
        self.target = target

    def holds_image(self, name: Reference, digest: str) -> bool:
        where = plan_one(name, self.target)
        ident = where.digest or where.tag or "latest"
        reg = self.registries.get(where.domain)
        return reg.manifest_digest(where.path, ident) == digest

    def blob_home(self, name: Reference, digest: str) -> Reference | None:
        where = plan_one(name, self.target)
        reg = self.registries.get(where.domain)
        return name if reg.blob_exists(where.path, digest, push=False) else None


class AnyOf:
    """Several far sides: held when any of them holds it."""

    def __init__(self, sides: Iterable[FarSide]) -> None:
        self.sides = list(sides)

    def holds_image(self, name: Reference, digest: str) -> bool:
        return any(s.holds_image(name, digest) for s in self.sides)

    def blob_home(self, name: Reference, digest: str) -> Reference | None:
        for s in self.sides:
            home = s.blob_home(name, digest)
            if home is not None:
                return home
        return None


@dataclass
class ImagePlan:
    """One image against the far side: held whole, or which blobs are there (and where)."""

    parts: ImageParts
    held: bool
    homes: dict[str, Reference]  # blob digest -> image whose repository holds it there

    def carried(self) -> dict[str, int]:
        if self.held:
            return {}
        return {d: n for d, n in self.parts.sizes().items() if d not in self.homes}


def compare(parts: Sequence[ImageParts], far: FarSide, jobs: int = 8) -> list[ImagePlan]:
    """Each image against ``far`` (requests in parallel when ``far`` is a registry). A blob
    the far side holds anywhere (in an image it holds whole, or found in some repository)
    is not carried for any image: there it is mounted from that repository."""
    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="kferry-far") as pool:
        held = list(pool.map(lambda p: far.holds_image(p.source, p.top.digest), parts))
        homes: dict[str, Reference] = {}
        for p, h in zip(parts, held, strict=True):
            if h:
                for d in p.blobs:
                    homes.setdefault(d, p.source)
        asks: list[tuple[Reference, str]] = [
            (p.source, d)
            for p, h in zip(parts, held, strict=True)
            if not h
            for d in p.blobs
            if d not in homes
        ]
        asks = list({d: (r, d) for r, d in reversed(asks)}.values())  # each blob once

        def home_of(ask: tuple[Reference, str]) -> Reference | None:
            return far.blob_home(*ask)

        for (_, d), home in zip(asks, pool.map(home_of, asks), strict=True):
            if home is not None:
                homes.setdefault(d, home)
    return [
        ImagePlan(p, h, {} if h else {d: homes[d] for d in p.blobs if d in homes})
        for p, h in zip(parts, held, strict=True)
    ]


@dataclass
class ImageSize:
    image: str
    bytes: int
    present_bytes: int


@dataclass
class SizeReport:
    images: list[ImageSize]
    total_bytes: int
    present_bytes: int
    to_carry_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "images": [
                {"image": i.image, "bytes": i.bytes, "present_bytes": i.present_bytes}
                for i in self.images
            ],
            "total_bytes": self.total_bytes,
            "present_bytes": self.present_bytes,
            "to_carry_bytes": self.to_carry_bytes,
        }


def size_report(plans: Sequence[ImagePlan]) -> SizeReport:
    """Per image and in total (each digest once in the totals): all bytes, bytes the far side
    holds, bytes left to carry (exactly what a bundle of ``plans`` writes under ``blobs/``)."""
    every: dict[str, int] = {}
    carry: dict[str, int] = {}
    rows = []
    for p in plans:
        sizes = p.parts.sizes()
        carried = p.carried()
        every.update(sizes)
        carry.update(carried)
        total = sum(sizes.values())
        rows.append(ImageSize(p.parts.source.canonical, total, total - sum(carried.values())))
    total_bytes = sum(every.values())
    to_carry = sum(carry.values())
    return SizeReport(rows, total_bytes, total_bytes - to_carry, to_carry)
