"""What belongs to an image besides itself: signatures, attestations and SBOMs.

Two conventions carry them, and kferry copies both (on by default, ``--no-referrers`` skips):

* cosign's tag scheme: manifests tagged ``sha256-<hex>.sig``, ``.att`` and ``.sbom`` in the
  image's repository (sigstore/cosign@v2.6.5 pkg/oci/remote/options.go:28-30
  ``SignatureTagSuffix``, ``SBOMTagSuffix``, ``AttestationTagSuffix``; remote.go:154
  ``suffixTag`` joins them to the digest);
* OCI 1.1 referrers: manifests whose ``subject`` names the image. A registry with the
  referrers API lists them at ``GET /v2/<name>/referrers/<digest>``; on one without it
  (Debian's docker-registry 2.8 among them) clients keep the list themselves as an index
  tagged ``sha256-<hex>``, the referrers tag schema (opencontainers/distribution-spec@v1.1.0
  spec.md, "Listing Referrers" and "Unavailable Referrers API").

Each is copied as one more image of the image's own repository, under its tag: a tag-scheme
artifact as it is, the referrers list as the tag-schema index (its children are the referrer
manifests, copied with their blobs like the platforms of a multi-arch image). Pushing that
index is what the spec asks of a client when the target has no referrers API, and is harmless
when it has one (the registry indexes each pushed ``subject`` itself). A list the target
already holds under that tag is merged, never replaced: referrers someone added on the far
side stay listed. A list that the source's referrers API sent (no tag there) is kept by the
source store under its tag-schema name, so the copier reads it like any manifest.

In a bundle each one is an ``index.json`` entry named by its source reference, with the
annotations :data:`SUBJECT_ANNOTATION` (the digest it belongs to) and :data:`KIND_ANNOTATION`;
``bundle load`` finds them there. The lock file lists them under their image's entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kferry.name import Reference
from kferry.transfer.media import OCI_INDEX, Manifest, parse_manifest

TAG_SUFFIXES = ("sig", "att", "sbom")
KIND_REFERRERS = "referrers"
SUBJECT_ANNOTATION = "io.kferry.referrer.subject"
KIND_ANNOTATION = "io.kferry.referrer.kind"
# Referrers of referrers (a signature of an SBOM) are followed this many levels deep, and no
# subject brings more than MAX_PER_SUBJECT of them: a hostile source cannot make it endless.
MAX_ROUNDS = 3
MAX_PER_SUBJECT = 256


def tag_for(digest: str, suffix: str | None = None) -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>`` (the tag schema), plus ``.sig`` etc. for cosign."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}" + (f".{suffix}" if suffix else "")


@dataclass(frozen=True, slots=True)
class Found:
    """One artifact that belongs to the image ``subject`` (a digest): where it is in the
    source (by tag, in the subject's repository) and which kind (``sig``, ``att``, ``sbom``
    or ``referrers``, the OCI referrers list)."""

    ref: Reference
    kind: str
    subject: str


@runtime_checkable
class ReferrerSource(Protocol):
    """A source that can list what belongs to an image."""

    def find_referrers(self, ref: Reference, digest: str) -> list[Found]: ...


@runtime_checkable
class ReferrerSink(Protocol):
    """A sink that records what an entry is (a bundle: annotations in ``index.json``)."""

    def mark_referrer(self, ref: Reference, found: Found) -> None: ...


@runtime_checkable
class ManifestReader(Protocol):
    """A sink whose manifests can be read back (a registry): needed to merge lists."""

    def get_manifest(self, ref: Reference) -> Manifest: ...


def covers(have: Manifest, want: Manifest) -> bool:
    """``have`` (a referrers list) already lists every manifest ``want`` lists."""
    digests = {d.digest for d in have.children}
    return all(d.digest in digests for d in want.children)


def merged_list(ours: Manifest, theirs: Manifest, where: str) -> Manifest:
    """Our referrers list with the entries only ``theirs`` has appended (their descriptors
    kept whole: artifactType and annotations are what clients filter on)."""
    doc = json.loads(ours.raw)
    have = {m.get("digest") for m in doc.get("manifests") or []}
    for m in json.loads(theirs.raw).get("manifests") or []:
        if isinstance(m, dict) and m.get("digest") not in have:
            doc.setdefault("manifests", []).append(m)
            have.add(m.get("digest"))
    doc.setdefault("mediaType", OCI_INDEX)
    return parse_manifest(json.dumps(doc, indent=2).encode(), OCI_INDEX, where)
