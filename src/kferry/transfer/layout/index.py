"""The OCI image layout format: ``index.json``, blob paths, bundle kinds; shared by every role."""

from __future__ import annotations

import errno
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from kferry.errors import InputError, KferryError
from kferry.transfer.media import Descriptor

UNPACK_PREFIX = "kferry-unpack-"
VERIFY_PREFIX = "kferry-verify-"
MAX_INDEX_BYTES = 64 << 20
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_FILE = {"imageLayoutVersion": "1.0.0"}
READ_CHUNK = 1 << 20
BASE_FILE = "kferry-base.json"  # a delta bundle's base (kferry.transfer.delta)


def bundle_kind(path: Path) -> str:
    name = path.name
    if name.endswith((".tar.zst", ".tar.zstd", ".tzst")):
        return "tar.zst"
    if name.endswith(".tar"):
        return "tar"
    return "dir"


def blob_path(root: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise InputError(f"{root}: invalid blob digest {digest!r}")
    return root / "blobs" / algo / hexpart


@dataclass
class IndexEntry:
    name: str
    descriptor: Descriptor
    annotations: dict[str, str] = field(default_factory=dict)


def os_error(exc: OSError, doing: str) -> KferryError:
    where = f"{exc.filename}: " if exc.filename else ""
    hint = ""
    if exc.errno == errno.ENOSPC:
        hint = "; free space there or choose another place"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "; choose a writable place"
    return KferryError(f"{where}{doing}: {exc.strerror or exc}{hint}")


def holds(path: Path, digest: str) -> bool:
    """``path`` exists and hashes to ``digest`` (read in 1 MiB pieces)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(READ_CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        return False
    return f"sha256:{h.hexdigest()}" == digest


def read_index(root: Path, missing_ok: bool = False) -> list[IndexEntry]:
    path = root / "index.json"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise InputError(f"{root}: not an OCI layout (no index.json)") from None
    return parse_index(data, str(path))


def parse_index(data: bytes, path: str) -> list[IndexEntry]:
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
