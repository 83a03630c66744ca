"""Manifest media types and the descriptors a manifest or index points at.

kferry never re-serialises a manifest: the bytes fetched are the bytes pushed (and hashed), so
every digest survives. This module only reads them to find children.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_TYPES

# Sent on every manifest request: schema1 is listed last so a registry that only has schema1
# says so (and kferry refuses it) instead of answering 404.
ACCEPT = ", ".join(
    [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1]
)

# Indexes of indexes exist (attestation indexes, vendor bundles); none real goes past 3 levels.
# The bounds stop a hostile registry or bundle from making a walk that never ends.
# distribution refuses manifests above 4 MiB (registry/handlers/manifests.go maxManifestBodySize);
# kferry reads no more than that from any registry or bundle.
MAX_MANIFEST_BYTES = 4 << 20
# The digest algorithm kferry copies and verifies: the one registries and OCI layouts
# address content by (a reference may name sha384/sha512; such an image is refused).
COPYABLE_DIGEST = "sha256"
MAX_INDEX_DEPTH = 8
MAX_MANIFESTS_PER_IMAGE = 4096

NON_DISTRIBUTABLE = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


class ManifestError(ValueError):
    """A manifest kferry cannot copy (schema1, unknown type, not JSON)."""


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str | None = None  # "linux/amd64[/v8]" for index entries

    @property
    def foreign(self) -> bool:
        return self.media_type in NON_DISTRIBUTABLE

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True)
class Manifest:
    """Raw manifest bytes plus what they point at."""

    raw: bytes
    media_type: str
    digest: str
    children: tuple[Descriptor, ...] = ()  # index entries (manifests)
    blobs: tuple[Descriptor, ...] = ()  # config and layers
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.raw)

    def descriptor(self, platform: str | None = None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, platform)


def _platform(p: Any) -> str | None:
    if not isinstance(p, dict):
        return None
    parts = [str(p.get("os", "")), str(p.get("architecture", ""))]
    if p.get("variant"):
        parts.append(str(p["variant"]))
    return "/".join(parts)


def _descriptor(d: Any, where: str) -> Descriptor:
    if not isinstance(d, dict) or "digest" not in d or "size" not in d:
        raise ManifestError(f"{where}: malformed descriptor")
    size, digest = d["size"], d["digest"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where}: descriptor size {size!r} is not a size in bytes")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ManifestError(f"{where}: descriptor digest {digest!r} is not a sha256 digest")
    return Descriptor(
        media_type=str(d.get("mediaType", "")),
        digest=digest,
        size=size,
        platform=_platform(d.get("platform")),
    )


def _list(doc: dict[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise ManifestError(f"{where}: {key} is not a list")
    return value


def parse_manifest(raw: bytes, content_type: str | None, where: str) -> Manifest:
    """Read a manifest's type and children; schema1 and unknown types are refused."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise ManifestError(f"{where}: manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: manifest is not a JSON object")
    ctype = (content_type or "").split(";")[0].strip()
    media_type = str(doc.get("mediaType") or "")
    if not media_type:
        if ctype in MANIFEST_TYPES:
            media_type = ctype
        elif doc.get("schemaVersion") == 1:
            media_type = DOCKER_SCHEMA1
        elif "manifests" in doc:
            media_type = OCI_INDEX
        elif "layers" in doc:
            media_type = OCI_MANIFEST
    if media_type in SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise ManifestError(
            f"{where}: Docker schema 1 manifest; schema 1 is deprecated and cannot be copied "
            "with its digest intact: rebuild or re-push the image with a current Docker or "
            "buildkit (schema 2 / OCI)"
        )
    if media_type not in MANIFEST_TYPES:
        raise ManifestError(f"{where}: unsupported manifest media type {media_type!r}")
    digest = sha256_digest(raw)
    if media_type in INDEX_TYPES:
        children = tuple(
            _descriptor(d, f"{where} manifests[{i}]")
            for i, d in enumerate(_list(doc, "manifests", where))
        )
        return Manifest(raw, media_type, digest, children=children)
    blobs = [_descriptor(doc.get("config"), f"{where} config")]
    blobs += [
        _descriptor(d, f"{where} layers[{i}]") for i, d in enumerate(_list(doc, "layers", where))
    ]
    return Manifest(raw, media_type, digest, blobs=tuple(blobs))
