"""``kferry.lock.json``: what was copied where, by digest. Written by transfer, read by rewrite.

One entry per image: source reference, target reference, digest, media type and size (and
``sourceDigest`` when a platform filter changed the digest, ``referrers`` for the signatures,
attestations, SBOMs and OCI referrers list copied with it, by tag). Entries for images not touched
by a run are kept, so several runs add up. The file is replaced atomically, and the whole
read-merge-replace runs under an ``flock`` on ``.NAME.kferry-lock`` beside it, so concurrent
runs sharing one lock file keep every entry. The lock is input to rewrite: every entry is
checked when read (references parse, digests are ``sha256:`` + 64 hex digits), and the
transfer commands read it before they copy anything (:func:`check_lock`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kferry import scratch
from kferry.atomic import atomic_write
from kferry.errors import InputError, KferryError
from kferry.name import InvalidReference, Reference, parse

LOCK_NAME = "kferry.lock.json"
LOCK_VERSION = 1
MAX_LOCK_BYTES = 64 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REFERRER_KEYS = ("tag", "digest", "kind")


@dataclass(frozen=True, slots=True)
class LockReferrer:
    """What was copied with an image: a signature, attestation, SBOM (cosign's tag scheme) or
    the OCI referrers list, by its tag in the image's target repository."""

    tag: str
    digest: str
    kind: str

    def to_json(self) -> dict[str, str]:
        return {"tag": self.tag, "digest": self.digest, "kind": self.kind}


@dataclass(frozen=True, slots=True)
class LockEntry:
    """One image as copied: from where, to where, and what it is (``source_digest`` when a
    platform filter changed the digest)."""

    source: Reference
    target: Reference
    digest: str
    media_type: str = ""
    size: int = 0
    source_digest: str = ""
    referrers: tuple[LockReferrer, ...] = ()

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "source": self.source.canonical,
            "target": self.target.canonical,
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
        }
        if self.source_digest and self.source_digest != self.digest:
            entry["sourceDigest"] = self.source_digest
        if self.referrers:
            entry["referrers"] = [r.to_json() for r in self.referrers]
        return entry


class Lock(Mapping[str, LockEntry]):
    """The entries of a lock file by canonical source reference."""

    def __init__(self, entries: Iterable[LockEntry] = ()) -> None:
        self._by_source = {e.source.canonical: e for e in entries}

    def __getitem__(self, source: str) -> LockEntry:
        return self._by_source[source]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_source)

    def __len__(self) -> int:
        return len(self._by_source)

    def entry(self, source: Reference) -> LockEntry | None:
        return self._by_source.get(source.canonical)

    def merged(self, entries: Iterable[LockEntry]) -> Lock:
        """This lock with ``entries`` added (same source = replaced)."""
        return Lock([*self.values(), *entries])

    def to_json(self) -> dict[str, Any]:
        return {
            "version": LOCK_VERSION,
            "images": [self._by_source[k].to_json() for k in sorted(self._by_source)],
        }


def _reference(where: str, value: Any) -> Reference:
    if not isinstance(value, str):
        raise InputError(f"{where}: not a string")
    try:
        return parse(value)
    except InvalidReference as exc:
        raise InputError(f"{where}: {exc}") from None


def _entry(name: str, i: int, entry: Any) -> LockEntry:
    where = f"{name}: images[{i}]"
    if not isinstance(entry, dict) or not {"source", "target", "digest"} <= entry.keys():
        raise InputError(f"{where} lacks source, target or digest")
    source = _reference(f"{where}.source", entry["source"])
    target = _reference(f"{where}.target", entry["target"])
    for key in ("digest", "sourceDigest"):
        if key in entry and (not isinstance(entry[key], str) or not _DIGEST.fullmatch(entry[key])):
            raise InputError(f"{where}.{key}: {entry[key]!r} is not a sha256 digest")
    size = entry.get("size", 0)
    if not isinstance(size, int) or size < 0:
        raise InputError(f"{where}.size: not a size in bytes")
    media_type = entry.get("mediaType", "")
    if not isinstance(media_type, str):
        raise InputError(f"{where}.mediaType: not a string")
    return LockEntry(
        source,
        target,
        entry["digest"],
        media_type,
        size,
        entry.get("sourceDigest", ""),
        _referrers(where, entry.get("referrers", [])),
    )


def _referrers(where: str, value: Any) -> tuple[LockReferrer, ...]:
    if not isinstance(value, list):
        raise InputError(f"{where}.referrers: not a list")
    out = []
    for j, r in enumerate(value):
        at = f"{where}.referrers[{j}]"
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in _REFERRER_KEYS):
            raise InputError(f"{at}: needs tag, digest and kind (strings)")
        if not _DIGEST.fullmatch(r["digest"]):
            raise InputError(f"{at}.digest: {r['digest']!r} is not a sha256 digest")
        out.append(LockReferrer(r["tag"], r["digest"], r["kind"]))
    return tuple(out)


def read_lock(path: Path) -> Lock:
    """Entries by canonical source reference; an absent file is an empty lock."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LOCK_BYTES + 1)
    except FileNotFoundError:
        return Lock()
    except IsADirectoryError:
        raise InputError(f"{path}: lock file is a directory") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read lock file: {exc.strerror or exc}") from None
    if len(data) > MAX_LOCK_BYTES:
        raise InputError(f"{path}: lock file larger than {MAX_LOCK_BYTES >> 20} MiB")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: cannot read lock file: {exc}") from None
    return lock_entries(str(path), doc)


def is_lock_document(doc: object) -> bool:
    """A parsed JSON document shaped like a lock file (an ``images`` list, not a Kubernetes
    object): how ``kferry images --diff`` tells a lock file from a render."""
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("images"), list)
        and "kind" not in doc
        and "apiVersion" not in doc
    )


def lock_entries(name: str, doc: object) -> Lock:
    """The entries of a parsed lock document, by source; ``name`` is what errors call it."""
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise InputError(f"{name}: not a kferry lock file (no 'images' list)")
    return Lock(_entry(name, i, entry) for i, entry in enumerate(doc["images"]))


def check_lock(path: Path) -> None:
    """Read the lock now (before a copy that would end by updating it): bad input up front."""
    if path.exists() and not path.is_file():
        raise InputError(f"{path}: lock file is not a regular file")
    read_lock(path)


def write_lock(path: Path, entries: Iterable[LockEntry]) -> Lock:
    """Merge ``entries`` into the lock at ``path`` (same source = replaced), atomically,
    holding the lock file's lock (waits for another run that holds it); returns the lock as
    written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KferryError(f"{path.parent}: cannot create: {exc.strerror or exc}") from None
    with scratch.exclusive(path.with_name(f".{path.name}.kferry-lock"), str(path), wait=True):
        merged = read_lock(path).merged(entries)
        atomic_write(path, (json.dumps(merged.to_json(), indent=2) + "\n").encode())
    return merged


def merge_locks(paths: Iterable[Path]) -> Lock:
    """The entries of several lock files (the shards of one transfer) as one lock. An image
    in two files must be the same there (target, digest); its referrers are joined. Anything
    else is bad input naming the image and both files."""
    merged: dict[str, tuple[LockEntry, Path]] = {}
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: no such lock file")
        for key, entry in read_lock(path).items():
            have = merged.get(key)
            if have is None:
                merged[key] = (entry, path)
                continue
            old, where = have
            if (old.target, old.digest) != (entry.target, entry.digest):
                raise InputError(
                    f"{key}: {where} has {old.target.canonical} {old.digest}, {path} has "
                    f"{entry.target.canonical} {entry.digest}; not merged"
                )
            tags = {r.tag: r for r in old.referrers}
            for r in entry.referrers:
                if r.tag in tags and tags[r.tag].digest != r.digest:
                    raise InputError(
                        f"{key}: referrer {r.tag} is {tags[r.tag].digest} in {where} and "
                        f"{r.digest} in {path}; not merged"
                    )
                tags[r.tag] = r
            joined = tuple(tags[t] for t in sorted(tags))
            merged[key] = (replace(old, referrers=joined), where)
    return Lock(e for e, _ in merged.values())


def write_new_lock(path: Path, lock: Lock) -> None:
    """``lock`` as the whole content of ``path`` (replaced atomically)."""
    atomic_write(path, (json.dumps(lock.to_json(), indent=2) + "\n").encode())
