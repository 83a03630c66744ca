"""OCI image layouts on disk: the offline bundle (a directory, a ``.tar`` or a ``.tar.zst``).

Layout (OCI image-layout spec 1.0): ``oci-layout``, ``index.json`` naming each image by its
source reference (``org.opencontainers.image.ref.name`` and containerd's
``io.containerd.image.name``), and ``blobs/sha256/<hex>``, every blob once however many images
share it. Manifests are stored exactly as fetched.

Writing goes to a staging directory (``OUT.kferry-partial`` beside a tar output, or the output
directory itself); each blob is streamed to ``<hex>.partial``, verified, and renamed, so an
interrupted save resumes where it stopped and never leaves a damaged blob under its digest.
``index.json`` and the tar file are written atomically at the end. The tar puts ``oci-layout``
and ``index.json`` first so that readers can stream it. One run at a time writes an output
(``.OUT.kferry-lock``, see :mod:`kferry.scratch`); the packing file ``.OUT.kferry-pack-*`` is
removed on SIGTERM, and one left by a killed run is removed by the next. A ``.tar.zst`` being
loaded is unpacked under ``--tmp-dir``/``TMPDIR``, never next to the bundle (a DVD or a full
USB stick), and removed on every exit. No library writes OCI layouts for
Python; the format is small and fully specified, so it is written here.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

from kferry import scratch
from kferry.atomic import atomic_write
from kferry.errors import InputError, KferryError
from kferry.name import Reference
from kferry.transfer.media import (
    MAX_INDEX_DEPTH,
    OCI_INDEX,
    Descriptor,
    Manifest,
    parse_manifest,
    sha256_digest,
)
from kferry.transfer.remote import MAX_MANIFEST_BYTES, DigestMismatch, verified
from kferry.transfer.stores import BlobOpener, BlobOutcome, OnBytes

UNPACK_PREFIX = "kferry-unpack-"
VERIFY_PREFIX = "kferry-verify-"
MAX_INDEX_BYTES = 64 << 20
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_FILE = {"imageLayoutVersion": "1.0.0"}
READ_CHUNK = 1 << 20


def bundle_kind(path: Path) -> str:
    name = path.name
    if name.endswith((".tar.zst", ".tar.zstd", ".tzst")):
        return "tar.zst"
    if name.endswith(".tar"):
        return "tar"
    return "dir"


def _blob_path(root: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise InputError(f"{root}: invalid blob digest {digest!r}")
    return root / "blobs" / algo / hexpart


@dataclass
class IndexEntry:
    name: str
    descriptor: Descriptor
    annotations: dict[str, str] = field(default_factory=dict)


def _os_error(exc: OSError, doing: str) -> KferryError:
    where = f"{exc.filename}: " if exc.filename else ""
    hint = ""
    if exc.errno == errno.ENOSPC:
        hint = "; free space there or choose another place"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "; choose a writable place"
    return KferryError(f"{where}{doing}: {exc.strerror or exc}{hint}")


class LayoutWriter:
    """An OCI layout being written (the sink of ``bundle save``). Use as a context manager:
    it holds the output's lock until closed."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.kind = bundle_kind(out)
        self.root = out if self.kind == "dir" else out.with_name(out.name + ".kferry-partial")
        self._stack = contextlib.ExitStack()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self._stack.enter_context(
                scratch.exclusive(out.with_name(f".{out.name}.kferry-lock"), f"{out}")
            )
            for stale in out.parent.glob(f".{glob.escape(out.name)}.kferry-pack-*"):
                stale.unlink()  # a killed run's packing file: ours now that we hold the lock
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._stack.close()
            raise _os_error(exc, "cannot write the bundle") from None
        except BaseException:
            self._stack.close()
            raise
        self._entries: dict[str, IndexEntry] = {}
        for e in _read_index(self.root, missing_ok=True):
            self._entries[e.name] = e
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._verified: set[str] = set()

    # -- ImageSink -----------------------------------------------------------------------------
    def manifest_digest(self, ref: Reference) -> str | None:
        entry = self._entries.get(ref.canonical)
        if entry is None:
            return None
        desc = entry.descriptor
        return desc.digest if self._complete(desc.digest, desc.media_type, 1) else None

    def _complete(self, digest: str, media_type: str | None, depth: int) -> bool:
        """The manifest and everything below it are here with the right bytes (re-hashed
        once per run: a blob damaged in place makes the image be copied again)."""
        if digest in self._verified:
            return True
        path = _blob_path(self.root, digest)
        if not _holds(path, digest) or depth > MAX_INDEX_DEPTH:
            return False
        try:
            m = parse_manifest(path.read_bytes(), media_type, str(path))
        except (OSError, ValueError):
            return False
        for child in m.children:
            if not self._complete(child.digest, child.media_type or None, depth + 1):
                return False
        for b in m.blobs:
            if not b.foreign and b.digest not in self._verified:
                if not _holds(_blob_path(self.root, b.digest), b.digest):
                    return False
                self._verified.add(b.digest)
        self._verified.add(digest)
        return True

    def put_blob(
        self, ref: Reference, desc: Descriptor, opener: BlobOpener, on_bytes: OnBytes
    ) -> BlobOutcome:
        path = _blob_path(self.root, desc.digest)
        with self._lock_for(desc.digest):
            if path.exists() and path.stat().st_size == desc.size and _holds(path, desc.digest):
                return "exists"  # re-hashed: a blob damaged in place is fetched again
            partial = path.with_name(path.name + ".partial")
            try:
                with opener() as chunks, open(partial, "wb") as f:
                    for chunk in verified(
                        chunks, desc.digest, desc.size, f"{ref.canonical}", on_bytes
                    ):
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(partial, path)
            except OSError as exc:
                raise _os_error(exc, f"cannot write blob {desc.digest}") from None
            return "sent"

    def put_manifest(
        self, ref: Reference, identifier: str, manifest: Manifest, *, top: bool = False
    ) -> None:
        path = _blob_path(self.root, manifest.digest)
        if not _holds(path, manifest.digest):
            atomic_write(path, manifest.raw)
        if top:
            name = ref.with_digest(None).canonical if not ref.digest else ref.canonical
            with self._guard:
                self._entries[name] = IndexEntry(
                    name, manifest.descriptor(), {REF_NAME: name, CONTAINERD_NAME: name}
                )

    def _lock_for(self, digest: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(digest, threading.Lock())

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> LayoutWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_leftovers(self) -> None:
        """What killed runs left in the staging area: partial blobs, temporary files."""
        for d in (self.root, self.root / "blobs" / "sha256"):
            for p in d.iterdir():
                if p.is_file() and (p.name.endswith(".partial") or p.name.startswith(".")):
                    with contextlib.suppress(OSError):
                        p.unlink()

    # -- finish --------------------------------------------------------------------------------
    def finish(self) -> Path:
        """Write ``oci-layout`` and ``index.json``; pack into the tar if one was asked for."""
        try:
            return self._finish()
        except OSError as exc:
            raise _os_error(exc, f"cannot finish the bundle {self.out}") from None

    def _finish(self) -> Path:
        self._remove_leftovers()
        atomic_write(self.root / "oci-layout", json.dumps(LAYOUT_FILE).encode())
        manifests = []
        for name in sorted(self._entries):
            e = self._entries[name]
            d = e.descriptor.to_json()
            d["annotations"] = e.annotations
            manifests.append(d)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        atomic_write(self.root / "index.json", json.dumps(index, indent=2).encode())
        if self.kind == "dir":
            return self.out
        _pack(self.root, self.out, self.kind == "tar.zst")
        shutil.rmtree(self.root)
        return self.out


def _holds(path: Path, digest: str) -> bool:
    """``path`` exists and hashes to ``digest`` (read in 1 MiB pieces)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(READ_CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        return False
    return f"sha256:{h.hexdigest()}" == digest


def _pack(root: Path, out: Path, zstd: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.kferry-pack-", dir=out.parent)
    scratch.track(Path(tmp))
    try:
        with os.fdopen(fd, "wb") as raw:
            stream: IO[bytes] = raw
            cctx = None
            if zstd:
                cctx = zstandard.ZstdCompressor(level=3, threads=-1)
                stream = cctx.stream_writer(raw, closefd=False)
            with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for rel in ["oci-layout", "index.json"]:
                    tar.add(root / rel, arcname=rel, recursive=False)
                blobs = sorted((root / "blobs" / "sha256").iterdir())
                for p in blobs:
                    if p.name.endswith(".partial"):
                        continue
                    tar.add(p, arcname=f"blobs/sha256/{p.name}", recursive=False)
            if cctx is not None:
                stream.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        scratch.untrack(Path(tmp))


def _read_index(root: Path, missing_ok: bool = False) -> list[IndexEntry]:
    path = root / "index.json"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise InputError(f"{root}: not an OCI layout (no index.json)") from None
    return _parse_index(data, str(path))


def _parse_index(data: bytes, path: str) -> list[IndexEntry]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: not an OCI index (not a JSON object)")
    manifests = doc.get("manifests") or []
    if not isinstance(manifests, list):
        raise InputError(f"{path}: manifests is not a list")
    entries = []
    for i, m in enumerate(manifests):
        if not isinstance(m, dict):
            raise InputError(f"{path}: manifests[{i}] is not a descriptor")
        ann_raw = m.get("annotations") or {}
        if not isinstance(ann_raw, dict):
            raise InputError(f"{path}: manifests[{i}].annotations is not an object")
        ann = {str(k): str(v) for k, v in ann_raw.items()}
        name = ann.get(CONTAINERD_NAME) or ann.get(REF_NAME) or str(m.get("digest"))
        try:
            desc = Descriptor(str(m["mediaType"]), str(m["digest"]), int(m["size"]))
        except (KeyError, ValueError, TypeError):
            raise InputError(f"{path}: manifests[{i}] is not a descriptor") from None
        if desc.size < 0 or not _DIGEST_RE.fullmatch(desc.digest):
            raise InputError(f"{path}: manifests[{i}] is not a descriptor (digest or size)")
        entries.append(IndexEntry(name, desc, ann))
    return entries


class LayoutReader:
    """An OCI layout read back (the source of ``bundle load``): a directory or a tar.

    A ``.tar`` is read in place (members by offset); a ``.tar.zst`` cannot be read out of
    order, so it is first unpacked into a temporary directory under ``tmp_dir`` (default
    ``TMPDIR``), removed when the reader closes or the process gets SIGTERM; one left by a
    killed run is removed by the next.
    """

    def __init__(self, path: Path, tmp_dir: Path | None = None) -> None:
        self.path = path
        if not path.exists():
            raise InputError(f"{path}: no such bundle")
        self.kind = "dir" if path.is_dir() else bundle_kind(path)
        if self.kind == "dir" and not path.is_dir():
            raise InputError(f"{path}: not a bundle (a directory, a .tar or a .tar.zst)")
        self._stack = contextlib.ExitStack()
        self._members: dict[str, tarfile.TarInfo] = {}
        if self.kind == "tar.zst":
            try:
                dest = self._stack.enter_context(scratch.scratch_dir(tmp_dir, UNPACK_PREFIX))
                _unpack_zst(path, dest)
            except BaseException:
                self._stack.close()
                raise
            self.root: Path | None = dest
        elif self.kind == "tar":
            self.root = None
            try:
                with tarfile.open(path, "r:") as tar:
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
        with open(self.path, "rb") as f:
            f.seek(member.offset_data)
            yield _Limited(f, member.size)  # type: ignore[misc]

    def _index(self) -> list[IndexEntry]:
        try:
            data = self.read_file("index.json", MAX_INDEX_BYTES)
        except InputError as exc:
            if "larger than" in str(exc):
                raise
            raise InputError(f"{self.path}: not an OCI layout (no index.json)") from None
        return _parse_index(data, f"{self.path}: index.json")

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
            yield _chunks(f)


def _chunks(f: IO[bytes] | _Limited) -> Iterator[bytes]:
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


def _unpack_zst(path: Path, dest: Path) -> None:
    dctx = zstandard.ZstdDecompressor()
    try:
        with (
            open(path, "rb") as raw,
            dctx.stream_reader(raw) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            for member in tar:
                if not member.isfile() or not _safe_member(member.name):
                    continue
                target = dest / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out, READ_CHUNK)
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise InputError(f"{path}: damaged bundle: {exc}") from None
    except OSError as exc:
        raise KferryError(
            f"{path}: cannot unpack into {dest}: {exc.strerror or exc}; choose a place with "
            "room for the unpacked bundle with --tmp-dir DIR (or TMPDIR)"
        ) from None


def _safe_member(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


# -- verify ------------------------------------------------------------------------------------
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
    if bundle_kind(path) == "tar.zst" and path.is_file():
        return _verify_stream(path, report, on_bytes)
    with LayoutReader(path) as reader:
        sizes: dict[str, int] = {}
        for name in reader.blob_names():
            if name.endswith(".partial"):
                continue
            h = hashlib.sha256()
            n = 0
            with reader.open_file(f"blobs/sha256/{name}") as f:
                for chunk in _chunks(f):
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
    dctx = zstandard.ZstdDecompressor()
    try:
        with (
            open(path, "rb") as raw,
            dctx.stream_reader(raw) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            for member in tar:
                if not member.isfile():
                    continue
                f = tar.extractfile(member)
                assert f is not None
                name = member.name.removeprefix("./")
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
                for chunk in _chunks(f):
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
    entries = _parse_index(index_raw, f"{path}: index.json")

    _check_graph(entries, sizes, small.get, report)
    return report


def _check_graph(
    entries: list[IndexEntry],
    sizes: dict[str, int],
    read: Callable[[str], bytes],
    report: VerifyReport,
) -> None:
    """Every image: manifest present, children and blobs present with the right sizes."""
    report.images = len(entries)

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
