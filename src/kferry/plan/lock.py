"""``kferry.lock.json``: what was copied where, by digest. Written by transfer, read by rewrite.

One entry per image: source reference, target reference, digest, media type and size (and
``sourceDigest`` when a platform filter changed the digest). Entries for images not touched
by a run are kept, so several runs add up. The file is replaced atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kferry.atomic import atomic_write
from kferry.errors import InputError

LOCK_NAME = "kferry.lock.json"
LOCK_VERSION = 1


def read_lock(path: Path) -> dict[str, dict[str, Any]]:
    """Entries by canonical source reference; an absent file is an empty lock."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
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
        if not isinstance(entry, dict) or not {"source", "target", "digest"} <= entry.keys():
            raise InputError(f"{name}: images[{i}] lacks source, target or digest")
        out[str(entry["source"])] = entry
    return out


def write_lock(path: Path, entries: Iterable[dict[str, Any]]) -> None:
    """Merge ``entries`` into the lock at ``path`` (same source = replaced), atomically."""
    merged = read_lock(path)
    for e in entries:
        merged[str(e["source"])] = e
    doc = {"version": LOCK_VERSION, "images": [merged[k] for k in sorted(merged)]}
    atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())
