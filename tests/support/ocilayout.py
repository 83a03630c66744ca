"""OCI image layouts written by hand, for in-process tests of the copier, the stores and the
layout writer without a registry.

Written from the OCI image-layout spec 1.0 (``oci-layout``, ``index.json``,
``blobs/sha256/<hex>``) with plain ``json`` and ``hashlib``, not with kferry's own writer, so
that a test that copies one of these with :class:`kferry.transfer.layout.LayoutWriter` checks
the writer against an independent oracle.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.removeprefix("sha256:")


def put_blob(root: Path, data: bytes) -> dict[str, Any]:
    """Write ``data`` under its digest; return its descriptor (without a media type)."""
    digest = digest_of(data)
    path = blob_path(root, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


@dataclass(frozen=True)
class LayoutImage:
    """What :func:`image` wrote: the top manifest's bytes and descriptor, every blob digest."""

    raw: bytes
    descriptor: dict[str, Any]
    blobs: frozenset[str]  # digests of everything below the top manifest, and its own

    @property
    def digest(self) -> str:
        return str(self.descriptor["digest"])


def image(root: Path, layers: Sequence[bytes], *, arch: str = "amd64") -> LayoutImage:
    """A single-platform image manifest (config + ``layers``) in the layout at ``root``."""
    config = json.dumps(
        {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
        sort_keys=True,
    ).encode()
    config_desc = {"mediaType": OCI_CONFIG, **put_blob(root, config)}
    layer_descs = [{"mediaType": OCI_LAYER, **put_blob(root, layer)} for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    }
    raw = json.dumps(manifest, indent=1).encode()
    desc = {"mediaType": OCI_MANIFEST, **put_blob(root, raw)}
    blobs = {config_desc["digest"], desc["digest"], *(d["digest"] for d in layer_descs)}
    return LayoutImage(raw, desc, frozenset(blobs))


def index(root: Path, children: Mapping[str, LayoutImage]) -> LayoutImage:
    """An image index over ``children`` (``"linux/amd64" -> image``) in the layout."""
    manifests = []
    blobs: set[str] = set()
    for platform, child in children.items():
        os_name, _, arch = platform.partition("/")
        manifests.append({**child.descriptor, "platform": {"os": os_name, "architecture": arch}})
        blobs |= child.blobs
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    desc = {"mediaType": OCI_INDEX, **put_blob(root, raw)}
    return LayoutImage(raw, desc, frozenset(blobs | {desc["digest"]}))


def finish(root: Path, named: Mapping[str, LayoutImage]) -> Path:
    """Write ``oci-layout`` and ``index.json`` naming each image (``ref.name`` annotation)."""
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    entries = [{**img.descriptor, "annotations": {REF_NAME: name}} for name, img in named.items()]
    (root / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    )
    return root


def blob_digests(root: Path) -> set[str]:
    """The digests of the complete blobs in a layout directory (not ``.partial`` files)."""
    return {
        f"sha256:{name}"
        for name in os.listdir(root / "blobs" / "sha256")
        if not name.endswith(".partial") and not name.startswith(".")
    }
