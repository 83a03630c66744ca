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
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise InputError(f"{path}: not a kferry lock file (no 'images' list)")
    out: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(doc["images"]):
        if not isinstance(entry, dict) or not {"source", "target", "digest"} <= entry.keys():
            raise InputError(f"{path}: images[{i}] lacks source, target or digest")
        out[str(entry["source"])] = entry
    return out


def write_lock(path: Path, entries: Iterable[dict[str, Any]]) -> None:
    """Merge ``entries`` into the lock at ``path`` (same source = replaced), atomically."""
    merged = read_lock(path)
    for e in entries:
        merged[str(e["source"])] = e
    doc = {"version": LOCK_VERSION, "images": [merged[k] for k in sorted(merged)]}
    atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())
