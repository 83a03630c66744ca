"""Bundles cut into volumes (``bundle save --split SIZE``) and the checksum of a single file.

A split ``OUT.tar`` (or ``OUT.tar.zst``) is the byte stream of the single file cut into
``OUT.tar.001``, ``OUT.tar.002``... of ``SIZE`` bytes (the last one shorter), plus a small
manifest ``OUT.tar.volumes.json`` naming each volume with its size and sha256. Each volume is
written to a temporary file beside it and renamed when complete (:func:`kferry.atomic.atomic_file`),
the manifest last, so a volume under its final name is always whole. A single-file bundle gets
``OUT.tar.sha256`` beside it (``sha256sum -c`` reads it).

Readers (``bundle load``, ``bundle verify``) read the volumes in order through
:class:`VolumeFile`, a seekable file over the pieces: nothing is joined on disk first. Volume
sets have no common library format for Python (``split`` and ``sha256sum`` are what sites use by
hand), so the reader and the manifest are written here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from kferry.atomic import atomic_file, atomic_write
from kferry.errors import InputError

MANIFEST_SUFFIX = ".volumes.json"
SHA_SUFFIX = ".sha256"
FORMAT = "kferry.volumes/v1"
MAX_VOLUMES = 100_000
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
MIN_VOLUME = 1 << 20


def parse_size(text: str) -> int:
    """``4.7G``, ``25G``, ``1M``, ``700MiB`` or plain bytes (binary units); at least 1 MiB."""
    m = _SIZE.match(text)
    if not m:
        raise InputError(f"--split {text!r}: not a size (e.g. 4.7G, 25G, 700M)")
    size = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if size < MIN_VOLUME:
        raise InputError(f"--split {text!r}: volumes must hold at least 1M")
    return size


def volume_name(out: Path, number: int) -> Path:
    return out.with_name(f"{out.name}.{number:03d}")


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name + MANIFEST_SUFFIX)


def sha_path(out: Path) -> Path:
    return out.with_name(out.name + SHA_SUFFIX)


@dataclass(frozen=True)
class Volume:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class VolumeSet:
    """A split bundle as its manifest describes it; ``bundle`` is the single file's path."""

    bundle: Path
    manifest: Path
    volumes: tuple[Volume, ...]

    def path(self, v: Volume) -> Path:
        return self.manifest.parent / v.name

    @property
    def size(self) -> int:
        return sum(v.size for v in self.volumes)

    def missing(self) -> list[str]:
        """Volumes absent or of the wrong size (checked before anything is read)."""
        problems = []
        for v in self.volumes:
            p = self.path(v)
            if not p.is_file():
                problems.append(f"volume {v.name} is missing")
            elif p.stat().st_size != v.size:
                problems.append(
                    f"volume {v.name} is damaged: {p.stat().st_size} bytes, "
                    f"the manifest says {v.size}"
                )
        return problems

    def damage(self, on_bytes: Callable[[int], None] | None = None) -> list[str]:
        """Every volume re-hashed against the manifest; one line per missing or damaged one."""
        problems = self.missing()
        bad = {p.split()[1] for p in problems}
        for v in self.volumes:
            if v.name in bad:
                continue
            h = hashlib.sha256()
            with open(self.path(v), "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
            if h.hexdigest() != v.sha256:
                problems.append(
                    f"volume {v.name} is damaged: content hashes to sha256:{h.hexdigest()}, "
                    f"the manifest says sha256:{v.sha256}"
                )
        return problems


def find_volumes(path: Path) -> VolumeSet | None:
    """The volume set ``path`` names: its manifest, or the single file's name when only the
    volumes exist. None for a plain bundle."""
    if path.name.endswith(MANIFEST_SUFFIX) and path.is_file():
        return read_manifest(path)
    if not path.exists() and manifest_path(path).is_file():
        return read_manifest(manifest_path(path))
    return None


def bundle_name(path: Path) -> Path:
    """What kind of bundle ``path`` is judged by: the single file a manifest stands for."""
    if path.name.endswith(MANIFEST_SUFFIX):
        return path.with_name(path.name.removesuffix(MANIFEST_SUFFIX))
    return path


def read_manifest(path: Path) -> VolumeSet:
    where = f"{path}"
    try:
        raw = path.read_bytes()[: 64 << 20]
        doc = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: not a volume manifest: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{where}: not a volume manifest (format is not {FORMAT})")
    vols = doc.get("volumes")
    if not isinstance(vols, list) or not vols or len(vols) > MAX_VOLUMES:
        raise InputError(f"{where}: volumes: a non-empty list expected")
    out: list[Volume] = []
    for i, v in enumerate(vols):
        ok = (
            isinstance(v, dict)
            and isinstance(v.get("name"), str)
            and "/" not in v["name"]
            and v["name"] not in ("", ".", "..")
            and isinstance(v.get("size"), int)
            and v["size"] >= 0
            and isinstance(v.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", v["sha256"])
        )
        if not ok:
            raise InputError(f"{where}: volumes[{i}]: name, size and sha256 expected")
        out.append(Volume(v["name"], v["size"], v["sha256"]))
    return VolumeSet(bundle_name(path), path, tuple(out))


class VolumeFile:
    """The volumes read in order as one seekable read-only file (what ``tarfile`` and the zstd
    stream reader need); only one volume is open at a time."""

    def __init__(self, vs: VolumeSet) -> None:
        self._vs = vs
        self._starts: list[int] = []
        pos = 0
        for v in vs.volumes:
            self._starts.append(pos)
            pos += v.size
        self._size = pos
        self._pos = 0
        self._open: tuple[int, BinaryIO] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _volume_at(self, pos: int) -> int:
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        parts: list[bytes] = []
        while n > 0 and self._pos < self._size:
            i = self._volume_at(self._pos)
            v = self._vs.volumes[i]
            if v.size == 0:
                self._pos += 0
                break
            f = self._file(i)
            f.seek(self._pos - self._starts[i])
            data = f.read(min(n, self._starts[i] + v.size - self._pos))
            if not data:
                raise InputError(f"{self._vs.manifest}: volume {v.name} is shorter than it says")
            parts.append(data)
            self._pos += len(data)
            n -= len(data)
        return b"".join(parts)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def _file(self, i: int) -> BinaryIO:
        if self._open is not None and self._open[0] == i:
            return self._open[1]
        self.close()
        v = self._vs.volumes[i]
        try:
            f = open(self._vs.path(v), "rb")  # noqa: SIM115 (kept open while reading it)
        except FileNotFoundError:
            raise InputError(f"{self._vs.manifest}: volume {v.name} is missing") from None
        self._open = (i, f)
        return f

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    @property
    def closed(self) -> bool:
        return False

    def __enter__(self) -> VolumeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def open_bundle_file(path: Path) -> Iterator[IO[bytes]]:
    """A single-file bundle, or a split one through its volumes, opened for reading."""
    vs = find_volumes(path)
    if vs is None:
        with open(path, "rb") as f:
            yield f
        return
    problems = vs.missing()
    if problems:
        raise InputError(f"{vs.manifest}: {problems[0]}; nothing was read")
    with VolumeFile(vs) as vf:
        yield vf  # type: ignore[misc]


class HashingFile:
    """A single-file bundle being written: the stream is hashed on the way to disk."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self.hash = f, hashlib.sha256()

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def writable(self) -> bool:
        return True


def write_sha(out: Path, hexdigest: str) -> None:
    atomic_write(sha_path(out), f"{hexdigest}  {out.name}\n".encode())


class VolumeWriter:
    """The tar stream of ``out`` cut into volumes of ``size`` bytes as it is written; each
    volume is atomic, the manifest is written by :meth:`finish`."""

    def __init__(self, out: Path, size: int) -> None:
        self.out, self.size = out, size
        self.volumes: list[Volume] = []
        self._stack = contextlib.ExitStack()
        self._f: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._left = 0
        # a manifest from an earlier save must not describe the volumes being replaced
        manifest_path(out).unlink(missing_ok=True)
        sha_path(out).unlink(missing_ok=True)
        out.unlink(missing_ok=True)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def write(self, data: Any) -> int:
        view = memoryview(data)
        written = len(view)
        while len(view):
            if self._f is None or self._left == 0:
                self._next()
            assert self._f is not None
            part = view[: self._left]
            self._f.write(part)
            self._hash.update(part)
            self._left -= len(part)
            view = view[len(part) :]
        return written

    def _next(self) -> None:
        self._close_volume()
        number = len(self.volumes) + 1
        path = volume_name(self.out, number)
        self._stack = contextlib.ExitStack()
        self._f = self._stack.enter_context(
            atomic_file(path, prefix=f".{path.name}.kferry-volume-")
        )
        self._hash = hashlib.sha256()
        self._left = self.size
        self.volumes.append(Volume(path.name, 0, ""))

    def _close_volume(self) -> None:
        if self._f is None:
            return
        last = self.volumes[-1]
        self._stack.close()  # renames the volume into place
        self._f = None
        self.volumes[-1] = Volume(last.name, self.size - self._left, self._hash.hexdigest())

    def abort(self) -> None:
        if self._f is not None:
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)
            self._f = None

    def finish(self) -> Path:
        if self._f is None:
            self._next()  # an empty stream still has one (empty) volume
        self._close_volume()
        n = len(self.volumes) + 1
        while volume_name(self.out, n).exists():  # left by an earlier, larger save
            volume_name(self.out, n).unlink()
            n += 1
        doc = {
            "format": FORMAT,
            "bundle": self.out.name,
            "volume_size": self.size,
            "total_size": sum(v.size for v in self.volumes),
            "volumes": [{"name": v.name, "size": v.size, "sha256": v.sha256} for v in self.volumes],
        }
        path = manifest_path(self.out)
        atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())
        return path


def check_sha(path: Path) -> list[str]:
    """A single file against the ``.sha256`` beside it (nothing to say when there is none)."""
    sp = sha_path(path)
    if not path.is_file() or not sp.is_file():
        return []
    want = sp.read_text(errors="replace").split()[:1]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if not want or want[0] != h.hexdigest():
        return [f"{path.name}: content hashes to sha256:{h.hexdigest()}, {sp.name} says otherwise"]
    return []
