"""Reading an OCI layout back: the source of ``bundle load`` (directory, tar, tar.zst)."""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from kferry import scratch
from kferry.errors import InputError
from kferry.name import Reference, try_parse
from kferry.transfer.errors import DigestMismatch
from kferry.transfer.layout.index import (
    MAX_INDEX_BYTES,
    READ_CHUNK,
    UNPACK_PREFIX,
    IndexEntry,
    bundle_kind,
    parse_index,
)
from kferry.transfer.layout.pack import unpack_zst
from kferry.transfer.layout.volumes import bundle_name, find_volumes, open_bundle_file
from kferry.transfer.media import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    Manifest,
    parse_manifest,
    sha256_digest,
)
from kferry.transfer.referrers import KIND_ANNOTATION, SUBJECT_ANNOTATION, Found


class LayoutReader:
    """An OCI layout read back (the source of ``bundle load``): a directory or a tar.

    A ``.tar`` is read in place (members by offset); a ``.tar.zst`` cannot be read out of
    order, so it is first unpacked into a temporary directory under ``tmp_dir`` (default
    ``TMPDIR``), removed when the reader closes or the process gets SIGTERM; one left by a
    killed run is removed by the next.
    """

    def __init__(self, path: Path, tmp_dir: Path | None = None) -> None:
        self.path = path
        self.volumes = find_volumes(path)
        if not path.exists() and self.volumes is None:
            raise InputError(f"{path}: no such bundle")
        if self.volumes is not None:
            problems = self.volumes.missing()
            if problems:  # before anything is written anywhere
                raise InputError(f"{self.volumes.manifest}: {problems[0]}")
        self.kind = "dir" if path.is_dir() else bundle_kind(bundle_name(path))
        if self.kind == "dir" and not path.is_dir():
            raise InputError(f"{path}: not a bundle (a directory, a .tar or a .tar.zst)")
        self._stack = contextlib.ExitStack()
        self._members: dict[str, tarfile.TarInfo] = {}
        if self.kind == "tar.zst":
            try:
                dest = self._stack.enter_context(scratch.scratch_dir(tmp_dir, UNPACK_PREFIX))
                unpack_zst(path, dest)
            except BaseException:
                self._stack.close()
                raise
            self.root: Path | None = dest
        elif self.kind == "tar":
            self.root = None
            try:
                with open_bundle_file(path) as f, tarfile.open(fileobj=f, mode="r:") as tar:
                    self._members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            except tarfile.TarError as exc:
                raise InputError(f"{path}: not a tar file: {exc}") from None
        else:
            self.root = path
        self.entries = self._index()

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> LayoutReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw access ----------------------------------------------------------------------------
    def read_file(self, rel: str, cap: int = MAX_MANIFEST_BYTES) -> bytes:
        """A small file (index.json, a manifest): more than ``cap`` bytes is bad input."""
        with self.open_file(rel) as f:
            data = f.read(cap + 1)
        if len(data) > cap:
            raise InputError(f"{self.path}: {rel} is larger than {cap >> 20} MiB")
        return data

    @contextlib.contextmanager
    def open_file(self, rel: str) -> Iterator[IO[bytes]]:
        if self.root is not None:
            try:
                with open(self.root / rel, "rb") as f:
                    yield f
            except FileNotFoundError:
                raise InputError(f"{self.path}: {rel} is missing") from None
            return
        member = self._members.get(rel)
        if member is None:
            raise InputError(f"{self.path}: {rel} is missing")
        with open_bundle_file(self.path) as f:
            f.seek(member.offset_data)
            yield _Limited(f, member.size)  # type: ignore[misc]

    def _index(self) -> list[IndexEntry]:
        try:
            data = self.read_file("index.json", MAX_INDEX_BYTES)
        except InputError as exc:
            if "larger than" in str(exc):
                raise
            raise InputError(f"{self.path}: not an OCI layout (no index.json)") from None
        return parse_index(data, f"{self.path}: index.json")

    def blob_names(self) -> list[str]:
        if self.root is not None:
            d = self.root / "blobs" / "sha256"
            return sorted(p.name for p in d.iterdir()) if d.is_dir() else []
        return sorted(n.split("/")[-1] for n in self._members if n.startswith("blobs/sha256/"))

    # -- ImageSource ---------------------------------------------------------------------------
    def find(self, ref: Reference) -> IndexEntry:
        for e in self.entries:
            if e.name == ref.canonical or (ref.digest and e.descriptor.digest == ref.digest):
                return e
        raise InputError(f"{self.path}: no image {ref.canonical} in this bundle")

    def images(self) -> list[IndexEntry]:
        """The entries that are images (not what belongs to one: see :meth:`find_referrers`)."""
        return [e for e in self.entries if SUBJECT_ANNOTATION not in e.annotations]

    def find_referrers(self, ref: Reference, digest: str) -> list[Found]:
        """The entries of ``ref``'s repository recorded as belonging to ``digest``."""
        found = []
        for e in self.entries:
            if e.annotations.get(SUBJECT_ANNOTATION) != digest:
                continue
            other = try_parse(e.name)
            if other is not None and other.repository == ref.repository and other.tag:
                found.append(Found(other, e.annotations.get(KIND_ANNOTATION, ""), digest))
        return found

    def get_manifest(self, ref: Reference) -> Manifest:
        entry = self.find(ref)
        return self._manifest(entry.descriptor.digest, entry.descriptor.media_type)

    def get_child(self, ref: Reference, digest: str) -> Manifest:
        return self._manifest(digest, None)

    def _manifest(self, digest: str, media_type: str | None) -> Manifest:
        raw = self.read_file(f"blobs/sha256/{digest.partition(':')[2]}")
        if sha256_digest(raw) != digest:
            raise DigestMismatch(f"{self.path}: manifest {digest} is damaged")
        return parse_manifest(raw, media_type, f"{self.path}: {digest}")

    @contextlib.contextmanager
    def open_blob(self, ref: Reference, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        with self.open_file(f"blobs/sha256/{desc.digest.partition(':')[2]}") as f:
            yield chunks(f)


def chunks(f: IO[bytes] | _Limited) -> Iterator[bytes]:
    while chunk := f.read(READ_CHUNK):
        yield chunk


class _Limited:
    """A read-only view of ``size`` bytes of a file from its current position."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f, self._left = f, size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data
