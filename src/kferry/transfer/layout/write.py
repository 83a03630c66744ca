"""Writing an OCI layout: the sink of ``bundle save`` (staged, resumable, locked)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

from kferry import scratch
from kferry.atomic import atomic_write
from kferry.errors import InputError
from kferry.name import Reference
from kferry.transfer.digest import verified
from kferry.transfer.layout.index import (
    BASE_FILE,
    CONTAINERD_NAME,
    LAYOUT_FILE,
    REF_NAME,
    IndexEntry,
    blob_path,
    bundle_kind,
    holds,
    os_error,
    read_index,
)
from kferry.transfer.layout.pack import pack
from kferry.transfer.media import MAX_INDEX_DEPTH, OCI_INDEX, Descriptor, Manifest, parse_manifest
from kferry.transfer.referrers import KIND_ANNOTATION, SUBJECT_ANNOTATION, Found
from kferry.transfer.stores import BlobOpener, BlobOutcome, OnBytes


class LayoutWriter:
    """An OCI layout being written (the sink of ``bundle save``). Use as a context manager:
    it holds the output's lock until closed."""

    def __init__(self, out: Path, split: int | None = None) -> None:
        self.out = out
        self.kind = bundle_kind(out)
        self.split = split
        if split is not None and self.kind == "dir":
            raise InputError(f"{out}: --split needs a .tar or .tar.zst output, not a directory")
        self.root = out if self.kind == "dir" else out.with_name(out.name + ".kferry-partial")
        self._stack = contextlib.ExitStack()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self._stack.enter_context(
                scratch.exclusive(out.with_name(f".{out.name}.kferry-lock"), f"{out}")
            )
            for pattern in (".{}.kferry-pack-*", ".{}.[0-9][0-9][0-9]*.kferry-volume-*"):
                for stale in out.parent.glob(pattern.format(glob.escape(out.name))):
                    stale.unlink()  # a killed run's packing file: ours now that we hold the lock
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._stack.close()
            raise os_error(exc, "cannot write the bundle") from None
        except BaseException:
            self._stack.close()
            raise
        self._entries: dict[str, IndexEntry] = {}
        for e in read_index(self.root, missing_ok=True):
            self._entries[e.name] = e
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._verified: set[str] = set()
        self.base: bytes | None = None  # a delta bundle's base record (kferry-base.json)

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
        path = blob_path(self.root, digest)
        if not holds(path, digest) or depth > MAX_INDEX_DEPTH:
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
                if not holds(blob_path(self.root, b.digest), b.digest):
                    return False
                self._verified.add(b.digest)
        self._verified.add(digest)
        return True

    def put_blob(
        self, ref: Reference, desc: Descriptor, opener: BlobOpener, on_bytes: OnBytes
    ) -> BlobOutcome:
        path = blob_path(self.root, desc.digest)
        with self._lock_for(desc.digest):
            if path.exists() and path.stat().st_size == desc.size and holds(path, desc.digest):
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
                raise os_error(exc, f"cannot write blob {desc.digest}") from None
            return "sent"

    def put_manifest(
        self, ref: Reference, identifier: str, manifest: Manifest, *, top: bool = False
    ) -> None:
        path = blob_path(self.root, manifest.digest)
        if not holds(path, manifest.digest):
            atomic_write(path, manifest.raw)
        if top:
            name = ref.with_digest(None).canonical if not ref.digest else ref.canonical
            with self._guard:
                self._entries[name] = IndexEntry(
                    name, manifest.descriptor(), {REF_NAME: name, CONTAINERD_NAME: name}
                )

    def mark_referrer(self, ref: Reference, found: Found) -> None:
        """Record in ``index.json`` that the entry ``ref`` belongs to an image (and which
        kind it is), so that ``bundle load`` copies it with that image."""
        with self._guard:
            entry = self._entries.get(ref.canonical)
            if entry is not None:
                entry.annotations[SUBJECT_ANNOTATION] = found.subject
                entry.annotations[KIND_ANNOTATION] = found.kind

    def forget(self, refs: Sequence[Reference]) -> None:
        """Leave these images out of ``index.json`` (a delta leaves out what the far side
        holds, even when an earlier save into the same OUT had them)."""
        with self._guard:
            for r in refs:
                self._entries.pop(r.canonical, None)

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
            raise os_error(exc, f"cannot finish the bundle {self.out}") from None

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
        base = self.root / BASE_FILE
        if self.base is not None:
            atomic_write(base, self.base)
        elif base.exists():
            base.unlink()  # a full save into what was a delta bundle
        if self.kind == "dir":
            return self.out
        written = pack(self.root, self.out, self.kind == "tar.zst", self.split)
        shutil.rmtree(self.root)
        return written
