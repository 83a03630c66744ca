"""Delta bundles: ``bundle save --since OLD`` and the base check of ``bundle load``.

OLD is what the far side already holds: a previous bundle (directory, ``.tar``, ``.tar.zst``,
itself possibly a delta: then its own base counts too), the lock file a previous run wrote
(its images are read back from the source registries by digest, manifests only), or a
registry reachable from here that holds what the far side holds (``REGISTRY/PROJECT``, named
by ``--layout``). The delta bundle holds every manifest of each image the far side lacks and
the blobs the far side lacks, and records its *base* in ``kferry-base.json`` beside
``index.json``: the images it relies on (by source name and digest) and each base blob with
the source name of an image whose repository holds it, so that ``bundle load`` can HEAD each
one where ``kferry plan`` puts it and mount it into the repositories that need it. Before
writing anything the load checks the whole base is there, and names what is missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kferry.errors import InputError, KferryError
from kferry.name import InvalidReference, Reference, parse
from kferry.plan import Layout, Target, plan_one
from kferry.plan.lock import is_lock_document, read_lock
from kferry.transfer.errors import RegistryError
from kferry.transfer.layout.index import BASE_FILE
from kferry.transfer.layout.read import LayoutReader
from kferry.transfer.media import Descriptor, Manifest
from kferry.transfer.registry import Registries
from kferry.transfer.size import (
    FarSide,
    ImagePlan,
    KnownBase,
    RegistryFar,
    image_parts,
    resolve_all,
)
from kferry.transfer.stores import BlobOpener, BlobOutcome, ImageSink, OnBytes, RegistryStore

BASE_FORMAT = "kferry-delta-base/1"
MAX_BASE_BYTES = 64 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_FILE_SUFFIXES = (".json", ".tar", ".tar.zst", ".tar.zstd", ".tzst")


@dataclass
class Base:
    """What a delta bundle relies on the far side holding."""

    images: dict[str, str] = field(default_factory=dict)  # source name -> top digest
    blobs: dict[str, tuple[str, int]] = field(default_factory=dict)  # digest -> (name, size)

    def __bool__(self) -> bool:
        return bool(self.images or self.blobs)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BASE_FORMAT,
            "images": [{"image": k, "digest": v} for k, v in sorted(self.images.items())],
            "blobs": [
                {"digest": d, "size": n, "image": name}
                for d, (name, n) in sorted(self.blobs.items())
            ],
        }

    def known(self) -> KnownBase:
        return KnownBase(
            dict(self.images),
            {d: (parse(name), n) for d, (name, n) in self.blobs.items()},
        )


def base_of(plans: Sequence[ImagePlan]) -> Base:
    """The base a delta of ``plans`` relies on: the images held whole, the blobs found there."""
    base = Base()
    for p in plans:
        if p.held:
            base.images[p.parts.source.canonical] = p.parts.top.digest
            continue
        for d, home in p.homes.items():
            base.blobs.setdefault(d, (home.canonical, p.parts.blobs[d].size))
    return base


def parse_base(data: bytes, where: str) -> Base:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{where}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != BASE_FORMAT:
        raise InputError(f"{where}: not a kferry delta base ({BASE_FORMAT})")
    base = Base()
    try:
        for i, e in enumerate(doc.get("images") or []):
            base.images[_name(e["image"], f"{where}: images[{i}]")] = _digest(
                e["digest"], f"{where}: images[{i}].digest"
            )
        for i, e in enumerate(doc.get("blobs") or []):
            size = e["size"]
            if not isinstance(size, int) or size < 0:
                raise InputError(f"{where}: blobs[{i}].size: not a size in bytes")
            base.blobs[_digest(e["digest"], f"{where}: blobs[{i}].digest")] = (
                _name(e["image"], f"{where}: blobs[{i}].image"),
                size,
            )
    except (KeyError, TypeError):
        raise InputError(f"{where}: an entry lacks image, digest or size") from None
    return base


def _name(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: not a string")
    try:
        return parse(value).canonical
    except InvalidReference as exc:
        raise InputError(f"{where}: {exc}") from None


def _digest(value: object, where: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise InputError(f"{where}: {value!r} is not a sha256 digest")
    return value


def read_base(reader: LayoutReader) -> Base:
    """The base recorded in a bundle (empty for a full bundle)."""
    try:
        data = reader.read_file(BASE_FILE, MAX_BASE_BYTES)
    except InputError as exc:
        if "missing" in str(exc):
            return Base()
        raise
    return parse_base(data, f"{reader.path}: {BASE_FILE}")


# -- what the far side holds ----------------------------------------------------------------------
def since_side(
    text: str,
    registries: Registries,
    platforms: Sequence[str],
    layout: Layout | str = Layout.KEEP,
    jobs: int = 8,
) -> FarSide:
    """``--since OLD``: a bundle, a lock file or ``REGISTRY/PROJECT``."""
    path = Path(text)
    if path.exists():
        if path.is_file() and _is_lock(path):
            return _lock_base(path, registries, platforms, jobs)
        return _bundle_base(path)
    if text.endswith(_FILE_SUFFIXES) or text.startswith((".", "/")):
        raise InputError(f"--since {text}: no such bundle or lock file")
    try:
        target = Target.parse(text, layout)
    except KferryError:
        raise InputError(
            f"--since {text}: no such bundle or lock file, and not a REGISTRY/PROJECT"
        ) from None
    return RegistryFar(registries, target)


def _is_lock(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16).lstrip()
    if not head.startswith(b"{"):
        return False
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        return False
    return is_lock_document(doc)


def _bundle_base(path: Path) -> KnownBase:
    """Everything an earlier bundle holds, and the base it relied on."""
    with LayoutReader(path) as reader:
        known = read_base(reader).known()
        for e in reader.entries:
            ref = _entry_ref(e.name, path)
            parts = image_parts(reader, ref, ())
            known.add(parts)
    return known


def _entry_ref(name: str, path: Path) -> Reference:
    try:
        return parse(name)
    except InvalidReference as exc:
        raise InputError(f"{path}: index.json names {name!r}: {exc}") from None


def _lock_base(
    path: Path, registries: Registries, platforms: Sequence[str], jobs: int
) -> KnownBase:
    """The images a lock file says were carried, read back from their sources by digest."""
    lock = read_lock(path)
    store = RegistryStore(registries)
    refs = []
    for e in lock.values():
        filtered = bool(e.source_digest) and e.source_digest != e.digest
        refs.append((e, e.source.with_digest(e.source_digest or e.digest), filtered))
    known = KnownBase()
    try:
        resolved = resolve_all(store, [r for _, r, f in refs if not f], (), jobs)
        resolved += resolve_all(store, [r for _, r, f in refs if f], platforms, jobs)
    except RegistryError as exc:
        raise KferryError(f"--since {path}: cannot read an image it names back: {exc}") from None
    order = [e for e, _, f in refs if not f] + [e for e, _, f in refs if f]
    for e, parts in zip(order, resolved, strict=True):
        known.images[e.source.canonical] = e.digest
        for b in parts.blobs.values():
            known.blobs.setdefault(b.digest, (e.source, b.size))
    return known


# -- saving ---------------------------------------------------------------------------------
class DeltaSink:
    """A bundle sink that leaves out the blobs the far side holds (``skip``)."""

    def __init__(self, sink: ImageSink, skip: set[str]) -> None:
        self.sink = sink
        self.skip = skip

    def manifest_digest(self, ref: Reference) -> str | None:
        return self.sink.manifest_digest(ref)

    def put_blob(
        self, ref: Reference, desc: Descriptor, opener: BlobOpener, on_bytes: OnBytes
    ) -> BlobOutcome:
        if desc.digest in self.skip:
            return "exists"
        return self.sink.put_blob(ref, desc, opener, on_bytes)

    def put_manifest(
        self, ref: Reference, identifier: str, manifest: Manifest, *, top: bool = False
    ) -> None:
        self.sink.put_manifest(ref, identifier, manifest, top=top)


# -- loading ---------------------------------------------------------------------------------
def check_base(
    base: Base, registries: Registries, store: RegistryStore, to: Target, jobs: int = 8
) -> None:
    """HEAD every base image and blob where the load puts them; raise (exit 1) naming every
    one missing, before anything is written. What is there is remembered by ``store`` so the
    images that need a base blob mount it."""

    def image(item: tuple[str, str]) -> str | None:
        name, digest = item
        where = plan_one(parse(name), to)
        reg = registries.get(where.domain)
        have = reg.manifest_digest(where.path, where.digest or where.tag or "latest", push=True)
        if have == digest:
            return None
        state = "absent" if have is None else f"names {have}"
        return f"image {where.canonical} (from {name}) should be {digest}: {state}"

    def blob(item: tuple[str, tuple[str, int]]) -> str | None:
        digest, (name, _) = item
        where = plan_one(parse(name), to)
        reg = registries.get(where.domain)
        if reg.blob_exists(where.path, digest, push=True):
            store.know(where, digest)
            return None
        return f"blob {digest} in {where.repository} (from {name})"

    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="kferry-base") as pool:
        missing = [m for m in pool.map(image, base.images.items()) if m]
        missing += [m for m in pool.map(blob, base.blobs.items()) if m]
    if missing:
        shown = "; ".join(missing[:20])
        more = f"; and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise KferryError(
            f"this is a delta bundle and {to} lacks {len(missing)} of its base: {shown}{more}; "
            "nothing was written: load the bundle it was made against first (or a full bundle)"
        )
