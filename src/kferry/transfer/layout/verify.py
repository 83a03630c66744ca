"""Verifying a bundle: every blob re-hashed, every image complete (``bundle verify``)."""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from kferry import scratch
from kferry.errors import InputError
from kferry.transfer.delta import MAX_BASE_BYTES, parse_base, read_base
from kferry.transfer.layout.index import (
    BASE_FILE,
    MAX_INDEX_BYTES,
    VERIFY_PREFIX,
    IndexEntry,
    bundle_kind,
    parse_index,
)
from kferry.transfer.layout.pack import zst_tar
from kferry.transfer.layout.read import LayoutReader, chunks
from kferry.transfer.layout.volumes import bundle_name, check_sha, find_volumes
from kferry.transfer.media import MAX_INDEX_DEPTH, MAX_MANIFEST_BYTES, Descriptor, parse_manifest
from kferry.transfer.referrers import SUBJECT_ANNOTATION


@dataclass
class VerifyReport:
    images: int = 0
    blobs: int = 0
    bytes: int = 0
    damage: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "ok": not self.damage,
            "damage": self.damage,
        }


def verify_bundle(path: Path, on_bytes: Callable[[int], None] | None = None) -> VerifyReport:
    """Re-hash every blob and check that every image is complete."""
    report = VerifyReport()
    volumes = find_volumes(path)
    if volumes is not None:
        report.damage += volumes.damage(on_bytes)
        if report.damage:  # the content cannot be read through a missing or damaged volume
            return report
    else:
        report.damage += check_sha(path)
    if bundle_kind(bundle_name(path)) == "tar.zst" and (path.is_file() or volumes is not None):
        return _verify_stream(path, report, on_bytes)
    with LayoutReader(path) as reader:
        sizes: dict[str, int] = {}
        for name in reader.blob_names():
            if name.endswith(".partial"):
                continue
            h = hashlib.sha256()
            n = 0
            with reader.open_file(f"blobs/sha256/{name}") as f:
                for chunk in chunks(f):
                    h.update(chunk)
                    n += len(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
            report.blobs += 1
            report.bytes += n
            sizes[f"sha256:{name}"] = n
            if h.hexdigest() != name:
                report.damage.append(
                    f"blobs/sha256/{name}: content hashes to sha256:{h.hexdigest()}"
                )
        for d, (_, n) in read_base(reader).blobs.items():
            sizes.setdefault(d, n)  # a delta bundle: the far side holds these
        _check_graph(
            reader.entries,
            sizes,
            lambda d: reader.read_file(f"blobs/sha256/{d.partition(':')[2]}"),
            report,
        )
    return report


class _Retained:
    """Blobs that may be manifests, kept for the graph check after the stream: in memory up
    to ``MEMORY`` bytes, then in a scratch directory, so memory stays bounded whatever the
    bundle holds (thousands of JSON blobs expanding from a small ``.tar.zst``)."""

    MEMORY = 64 << 20

    def __init__(self, stack: contextlib.ExitStack, tmp_dir: Path | None) -> None:
        self._stack, self._tmp_dir = stack, tmp_dir
        self._mem: dict[str, bytes] = {}
        self._used = 0
        self._dir: Path | None = None

    def put(self, digest: str, data: bytes) -> None:
        if self._used + len(data) <= self.MEMORY:
            self._mem[digest] = data
            self._used += len(data)
            return
        if self._dir is None:
            self._dir = self._stack.enter_context(scratch.scratch_dir(self._tmp_dir, VERIFY_PREFIX))
        (self._dir / digest.partition(":")[2]).write_bytes(data)

    def get(self, digest: str) -> bytes:
        if digest in self._mem:
            return self._mem[digest]
        if self._dir is not None:
            with contextlib.suppress(FileNotFoundError):
                return (self._dir / digest.partition(":")[2]).read_bytes()
        raise InputError(f"{digest} is missing")


def _verify_stream(
    path: Path, report: VerifyReport, on_bytes: Callable[[int], None] | None
) -> VerifyReport:
    with contextlib.ExitStack() as stack:
        return _verify_stream_in(path, report, on_bytes, _Retained(stack, None))


def _verify_stream_in(
    path: Path,
    report: VerifyReport,
    on_bytes: Callable[[int], None] | None,
    small: _Retained,
) -> VerifyReport:
    sizes: dict[str, int] = {}
    index_raw: bytes | None = None
    base_raw: bytes | None = None
    try:
        with zst_tar(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                f = tar.extractfile(member)
                assert f is not None
                name = member.name.removeprefix("./")
                if name == BASE_FILE:
                    base_raw = f.read(MAX_BASE_BYTES + 1)
                    continue
                if name == "index.json":
                    index_raw = f.read(MAX_INDEX_BYTES + 1)
                    if len(index_raw) > MAX_INDEX_BYTES:
                        report.damage.append(
                            f"index.json is larger than {MAX_INDEX_BYTES >> 20} MiB"
                        )
                        return report
                    continue
                if not name.startswith("blobs/sha256/"):
                    continue
                hexname = name.split("/")[-1]
                h = hashlib.sha256()
                n = 0
                keep = member.size <= MAX_MANIFEST_BYTES
                buf = bytearray()
                for chunk in chunks(f):
                    h.update(chunk)
                    n += len(chunk)
                    if keep and not buf and chunk.lstrip()[:1] != b"{":
                        keep = False  # not JSON: not a manifest
                    if keep:
                        buf += chunk
                    if on_bytes:
                        on_bytes(len(chunk))
                report.blobs += 1
                report.bytes += n
                sizes[f"sha256:{hexname}"] = n
                if keep:
                    small.put(f"sha256:{hexname}", bytes(buf))
                if h.hexdigest() != hexname:
                    report.damage.append(f"{name}: content hashes to sha256:{h.hexdigest()}")
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        report.damage.append(f"archive: {exc}")
        return report
    if index_raw is None:
        report.damage.append("index.json is missing")
        return report
    entries = parse_index(index_raw, f"{path}: index.json")
    if base_raw is not None:
        for d, (_, n) in parse_base(base_raw, f"{path}: {BASE_FILE}").blobs.items():
            sizes.setdefault(d, n)

    _check_graph(entries, sizes, small.get, report)
    return report


def _check_graph(
    entries: list[IndexEntry],
    sizes: dict[str, int],
    read: Callable[[str], bytes],
    report: VerifyReport,
) -> None:
    """Every image (and what belongs to one: checked alike, not counted as an image):
    manifest present, children and blobs present with the right sizes."""
    report.images = sum(SUBJECT_ANNOTATION not in e.annotations for e in entries)

    def check(desc: Descriptor, owner: str) -> None:
        if desc.foreign:
            return
        have = sizes.get(desc.digest)
        if have is None:
            report.damage.append(f"{owner}: {desc.digest} is missing")
            return
        if have != desc.size:
            report.damage.append(f"{owner}: {desc.digest} has {have} bytes, expected {desc.size}")

    def walk(desc: Descriptor, owner: str, depth: int, seen: set[str]) -> None:
        check(desc, owner)
        if desc.digest not in sizes or desc.digest in seen:
            return
        seen.add(desc.digest)
        if depth > MAX_INDEX_DEPTH:
            report.damage.append(f"{owner}: indexes nested deeper than {MAX_INDEX_DEPTH} levels")
            return
        try:
            m = parse_manifest(read(desc.digest), desc.media_type or None, owner)
        except (InputError, ValueError) as exc:
            report.damage.append(f"{owner}: {exc}")
            return
        for child in m.children:
            walk(child, owner, depth + 1, seen)
        for b in m.blobs:
            check(b, owner)

    for e in entries:
        walk(e.descriptor, e.name, 1, set())
