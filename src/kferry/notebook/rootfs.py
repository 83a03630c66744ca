"""What an image's layers add up to: the file tree a container would see, without unpacking it.

Each layer is a tar stream (gzip, zstd or plain), applied in order with the OCI whiteout rules
(image-spec ``layer.md``: ``.wh.NAME`` deletes NAME and everything under it, ``.wh..wh..opq``
empties a directory of what lower layers put there). Only the metadata of every entry is kept
(type, mode, owner, link target), plus the bytes of the few small files the notebook build
reads: ``*.dist-info/RECORD`` (to replace a package the base already has) and the C library
(its version string says which ``manylinux`` wheels run there) and each Python's ``site.py``
(Debian's says ``dist-packages``). Python's ``tarfile`` reads the
streams; what is written here is only the overlay bookkeeping, which no library does.
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import zstandard

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_LIBC = re.compile(r"(?:^|/)(?:libc\.so\.6|libc-2\.\d+\.so)$")
_SYSTEM_LIB = re.compile(r"^/(?:usr/)?lib(?:64)?(?:/[^/]+-linux-gnu[^/]*)?/[^/]+$")
_MUSL = re.compile(r"(?:^|/)ld-musl-[^/]+\.so\.1$")
_RECORD = re.compile(r"/[^/]+\.dist-info/RECORD$")
_SITE = re.compile(r"/lib/python3\.\d+/site\.py$")
_GLIBC_VERSION = re.compile(rb"GNU C Library[^\n]*?version (\d+)\.(\d+)")
MAX_CAPTURE = 8 << 20


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # file | dir | symlink | hardlink | other
    mode: int
    uid: int
    gid: int
    link: str = ""


@dataclass
class Tree:
    """The merged file tree: absolute paths (``/usr/bin/python3``) to their entries."""

    entries: dict[str, Entry] = field(default_factory=dict)
    captured: dict[str, bytes] = field(default_factory=dict)

    def get(self, path: str) -> Entry | None:
        return self.entries.get(path)

    def exists(self, path: str) -> bool:
        return path in self.entries

    def resolve(self, path: str, hops: int = 20) -> str | None:
        """Follow symlinks (in every component) inside the tree; None if it leads nowhere."""
        parts = [p for p in path.split("/") if p]
        current = "/"
        while parts:
            hops -= 1
            if hops < 0:
                return None
            name = parts.pop(0)
            if name == "..":
                current = posixpath.dirname(current) or "/"
                continue
            if name == ".":
                continue
            candidate = posixpath.join(current, name)
            entry = self.entries.get(candidate)
            if entry is None:
                if not parts:
                    return None
                # tars need not list parent directories: a missing one is implicit
                current = candidate
                continue
            if entry.kind == "symlink":
                link = entry.link
                base = "/" if link.startswith("/") else current
                parts = [p for p in link.split("/") if p] + parts
                current = base
                continue
            current = candidate
        return current

    def children(self, directory: str) -> Iterator[str]:
        prefix = directory.rstrip("/") + "/"
        for path in self.entries:
            if path.startswith(prefix) and "/" not in path[len(prefix) :]:
                yield path

    def glibc(self) -> tuple[int, int] | None:
        """The version of the system C library (the one in the standard library directories,
        not a toolchain's sysroot copy, such as conda compilers carry)."""
        found: list[tuple[bool, tuple[int, int]]] = []
        for path, data in self.captured.items():
            if not _LIBC.search(path):
                continue
            m = _GLIBC_VERSION.search(data)
            if m:
                found.append((bool(_SYSTEM_LIB.match(path)), (int(m.group(1)), int(m.group(2)))))
        system = [v for is_system, v in found if is_system]
        if system or found:
            return max(system) if system else min(v for _, v in found)
        return None

    def musl(self) -> bool:
        return any(_MUSL.search(p) for p in self.entries)

    # -- applying layers ---------------------------------------------------------------------
    def _remove(self, path: str) -> None:
        self.entries.pop(path, None)
        self.captured.pop(path, None)
        self._remove_below(path)

    def _remove_below(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        for p in [p for p in self.entries if p.startswith(prefix)]:
            del self.entries[p]
            self.captured.pop(p, None)

    def apply(self, members: Iterable[tuple[tarfile.TarInfo, Callable[[], bytes] | None]]) -> None:
        """Apply one layer: (member, reader of its bytes for the files worth keeping)."""
        opaque: list[str] = []
        added: set[str] = set()
        for info, read in members:
            path = "/" + posixpath.normpath(_relative(info.name))
            if path == "/.":
                continue
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == OPAQUE:
                opaque.append(parent)
                continue
            if base.startswith(WHITEOUT):
                self._remove(posixpath.join(parent, base[len(WHITEOUT) :]))
                continue
            if info.isdir():
                kind = "dir"
            elif info.issym():
                kind = "symlink"
            elif info.islnk():
                kind = "hardlink"
            elif info.isreg():
                kind = "file"
            else:
                kind = "other"
            old = self.entries.get(path)
            if old is not None and old.kind == "dir" and kind != "dir":
                self._remove_below(path)
            self.entries[path] = Entry(kind, info.mode, info.uid, info.gid, info.linkname)
            added.add(path)
            self.captured.pop(path, None)
            if read is not None:
                self.captured[path] = read()
        for directory in opaque:  # a layer's own entries under an opaque dir stay
            prefix = directory.rstrip("/") + "/"
            for p in [p for p in self.entries if p.startswith(prefix) and p not in added]:
                del self.entries[p]
                self.captured.pop(p, None)


def wants(info: tarfile.TarInfo) -> bool:
    """Whether the notebook build needs this member's bytes."""
    if not info.isreg() or info.size > MAX_CAPTURE:
        return False
    name = "/" + _relative(info.name)
    return bool(_RECORD.search(name) or _LIBC.search(name) or _SITE.search(name))


class ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (a blob being downloaded)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = chunk
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def layer_members(
    chunks: Iterator[bytes], media_type: str
) -> Iterator[tuple[tarfile.TarInfo, Callable[[], bytes] | None]]:
    """The members of one layer blob, streamed (gzip, zstd or plain tar by media type)."""
    raw: IO[bytes] = io.BufferedReader(ChunkReader(chunks), 1 << 20)
    if "zstd" in media_type:
        raw = zstandard.ZstdDecompressor().stream_reader(raw)
        mode = "r|"
    elif "gzip" in media_type:
        mode = "r|gz"
    else:
        mode = "r|*"
    with tarfile.open(fileobj=raw, mode=mode) as tar:  # type: ignore[call-overload]
        for info in tar:
            if wants(info):
                f = tar.extractfile(info)
                data = f.read() if f is not None else b""
                yield info, _constant(data)
            else:
                yield info, None


def _relative(name: str) -> str:
    """A member name without its leading ``./`` or ``/`` (``.wh.x`` keeps its dot)."""
    return re.sub(r"^(?:\./|/)+", "", name)


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data
