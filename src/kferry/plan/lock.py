"""``kferry.lock.json``: what was copied where, by digest. Written by transfer, read by rewrite.

One entry per image: source reference, target reference, digest, media type and size (and
``sourceDigest`` when a platform filter changed the digest). Entries for images not touched
by a run are kept, so several runs add up. The file is replaced atomically, and the whole
read-merge-replace runs under an ``flock`` on ``.NAME.kferry-lock`` beside it, so concurrent
runs sharing one lock file keep every entry. The lock is input to rewrite: every entry is
checked when read (references parse, digests are ``sha256:`` + 64 hex digits), and the
transfer commands read it before they copy anything (:func:`check_lock`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kferry import scratch
from kferry.atomic import atomic_write
from kferry.errors import InputError, KferryError
from kferry.name import InvalidReference, parse

LOCK_NAME = "kferry.lock.json"
LOCK_VERSION = 1
MAX_LOCK_BYTES = 64 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _check_entry(name: str, i: int, entry: Any) -> dict[str, Any]:
    where = f"{name}: images[{i}]"
    if not isinstance(entry, dict) or not {"source", "target", "digest"} <= entry.keys():
        raise InputError(f"{where} lacks source, target or digest")
    for key in ("source", "target"):
        value = entry[key]
        if not isinstance(value, str):
            raise InputError(f"{where}.{key}: not a string")
        try:
            parse(value)
        except InvalidReference as exc:
            raise InputError(f"{where}.{key}: {exc}") from None
    for key in ("digest", "sourceDigest"):
        if key in entry and (not isinstance(entry[key], str) or not _DIGEST.fullmatch(entry[key])):
            raise InputError(f"{where}.{key}: {entry[key]!r} is not a sha256 digest")
    if "size" in entry and (not isinstance(entry["size"], int) or entry["size"] < 0):
        raise InputError(f"{where}.size: not a size in bytes")
    if "mediaType" in entry and not isinstance(entry["mediaType"], str):
        raise InputError(f"{where}.mediaType: not a string")
    return entry


def read_lock(path: Path) -> dict[str, dict[str, Any]]:
    """Entries by canonical source reference; an absent file is an empty lock."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LOCK_BYTES + 1)
    except FileNotFoundError:
        return {}
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


def lock_entries(name: str, doc: object) -> dict[str, dict[str, Any]]:
    """The entries of a parsed lock document, by source; ``name`` is what errors call it."""
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise InputError(f"{name}: not a kferry lock file (no 'images' list)")
    out: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(doc["images"]):
        entry = _check_entry(name, i, entry)
        out[str(entry["source"])] = entry
    return out


def check_lock(path: Path) -> None:
    """Read the lock now (before a copy that would end by updating it): bad input up front."""
    if path.exists() and not path.is_file():
        raise InputError(f"{path}: lock file is not a regular file")
    read_lock(path)


def write_lock(path: Path, entries: Iterable[dict[str, Any]]) -> None:
    """Merge ``entries`` into the lock at ``path`` (same source = replaced), atomically,
    holding the lock file's lock (waits for another run that holds it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KferryError(f"{path.parent}: cannot create: {exc.strerror or exc}") from None
    with scratch.exclusive(path.with_name(f".{path.name}.kferry-lock"), str(path), wait=True):
        merged = read_lock(path)
        for e in entries:
            merged[str(e["source"])] = e
        doc = {"version": LOCK_VERSION, "images": [merged[k] for k in sorted(merged)]}
        atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())
