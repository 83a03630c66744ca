"""Where images are copied from and to: the interface the copier uses, and registries.

A *store* reads and/or writes manifests and blobs addressed by an image reference (whose
repository matters for registries and is ignored by an OCI layout, which is content-addressed).
:class:`RegistryStore` adds what makes registry pushes cheap: a blob already in the target
repository is not sent, a blob already pushed to another repository of the same registry is
mounted, and concurrent pushes of one blob wait for each other instead of racing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Literal, Protocol, runtime_checkable

from kferry.name import Reference
from kferry.transfer.digest import verified
from kferry.transfer.media import Descriptor, Manifest
from kferry.transfer.referrers import KIND_REFERRERS, TAG_SUFFIXES, Found, tag_for
from kferry.transfer.registry import Registries, Registry

BlobOutcome = Literal["sent", "mounted", "exists"]
BlobOpener = Callable[[], AbstractContextManager[Iterator[bytes]]]
OnBytes = Callable[[int], None]


class ImageSource(Protocol):
    def get_manifest(self, ref: Reference) -> Manifest: ...

    def get_child(self, ref: Reference, digest: str) -> Manifest: ...

    def open_blob(
        self, ref: Reference, desc: Descriptor
    ) -> AbstractContextManager[Iterator[bytes]]: ...


@runtime_checkable
class DigestSource(Protocol):
    """A source that can say which digest a reference names without sending the manifest."""

    def source_digest(self, ref: Reference) -> str | None: ...


class ImageSink(Protocol):
    def manifest_digest(self, ref: Reference) -> str | None: ...

    def put_blob(
        self, ref: Reference, desc: Descriptor, opener: BlobOpener, on_bytes: OnBytes
    ) -> BlobOutcome: ...

    def put_manifest(
        self, ref: Reference, identifier: str, manifest: Manifest, *, top: bool = False
    ) -> None: ...


def _identifier(ref: Reference) -> str:
    return ref.digest or ref.tag or "latest"


class RegistryStore:
    """Images in registries (any host, found through ``Registries``)."""

    def __init__(self, registries: Registries) -> None:
        self.registries = registries
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._known: dict[tuple[str, str], str] = {}  # (host, digest) -> a repo holding it
        self._present: set[tuple[str, str, str]] = set()  # (host, repo, digest) seen there
        # Referrers lists the referrers API sent, under their tag-schema name (not a tag there).
        self._listed: dict[str, Manifest] = {}
        self._no_referrers_api: set[str] = set()  # hosts that answered the API with 404
        self._tag_lists: dict[tuple[str, str], set[str] | None] = {}
        self._tag_locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    # -- source -------------------------------------------------------------------------------
    def get_manifest(self, ref: Reference) -> Manifest:
        listed = self._listed.get(ref.canonical)
        if listed is not None:
            return listed
        return self.registries.get(ref.domain).get_manifest(ref.path, _identifier(ref))

    def find_referrers(self, ref: Reference, digest: str) -> list[Found]:
        """cosign's ``.sig``/``.att``/``.sbom`` tags, then the OCI referrers (the API where
        the registry has it, else the tag schema); see :mod:`kferry.transfer.referrers`.

        Tags are looked up in the repository's tag list, fetched once per run (one request
        for all its images, instead of four per image); a registry that will not list them
        is asked tag by tag. A registry that answered the referrers API with 404 has none
        (one with the API never answers 404), so it is not asked again."""
        reg = self.registries.get(ref.domain)
        tags = self._tags(reg, ref)

        def has(tag: str) -> bool:
            if tags is not None:
                return tag in tags
            return reg.manifest_digest(ref.path, tag) is not None

        found = [
            Found(ref.at(tag_for(digest, s)), s, digest)
            for s in TAG_SUFFIXES
            if has(tag_for(digest, s))
        ]
        listing_ref = ref.at(tag_for(digest))
        listing = None if reg.host in self._no_referrers_api else reg.referrers(ref.path, digest)
        if listing is not None:
            if listing.children:
                with self._guard:
                    self._listed[listing_ref.canonical] = listing
                found.append(Found(listing_ref, KIND_REFERRERS, digest))
            return found
        with self._guard:
            self._no_referrers_api.add(reg.host)
        if has(listing_ref.tag or ""):
            found.append(Found(listing_ref, KIND_REFERRERS, digest))
        return found

    def _tags(self, reg: Registry, ref: Reference) -> set[str] | None:
        key = (reg.host, ref.path)
        with self._guard:
            lock = self._tag_locks.setdefault(key, threading.Lock())
        with lock:  # one listing per repository, however many of its images ask
            if key not in self._tag_lists:
                self._tag_lists[key] = reg.tags(ref.path)
            return self._tag_lists[key]

    def source_digest(self, ref: Reference) -> str | None:
        """The digest ``ref`` names at the source now (one HEAD), None when it is absent."""
        return self.registries.get(ref.domain).manifest_digest(ref.path, _identifier(ref))

    def get_child(self, ref: Reference, digest: str) -> Manifest:
        return self.registries.get(ref.domain).get_manifest(ref.path, digest)

    def open_blob(
        self, ref: Reference, desc: Descriptor
    ) -> AbstractContextManager[Iterator[bytes]]:
        return self.registries.get(ref.domain).open_blob(ref.path, desc.digest)

    # -- sink ---------------------------------------------------------------------------------
    def manifest_digest(self, ref: Reference) -> str | None:
        return self.registries.get(ref.domain).manifest_digest(
            ref.path, _identifier(ref), push=True
        )

    def _lock_for(self, host: str, digest: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((host, digest), threading.Lock())

    def put_blob(
        self, ref: Reference, desc: Descriptor, opener: BlobOpener, on_bytes: OnBytes
    ) -> BlobOutcome:
        reg = self.registries.get(ref.domain)
        repo = ref.path
        with self._lock_for(reg.host, desc.digest):
            if (reg.host, repo, desc.digest) in self._present:
                return "exists"
            location: str | None = None
            other = self._known.get((reg.host, desc.digest))
            if other is not None:
                # Known elsewhere on this registry: one mount request answers both "is it
                # here already?" (mounting an existing blob is a no-op) and "make it so".
                location = reg.mount_blob(repo, desc.digest, other)
                if location is None:
                    self._remember(reg.host, desc.digest, repo)
                    return "mounted"
            elif reg.blob_exists(repo, desc.digest):
                self._remember(reg.host, desc.digest, repo)
                return "exists"
            if location is None:
                location = reg.start_upload(repo)
            where = f"{ref.repository}: blob {desc.digest}"
            with opener() as chunks:
                reg.upload(
                    repo,
                    location,
                    desc.digest,
                    desc.size,
                    verified(chunks, desc.digest, desc.size, where, on_bytes),
                )
            self._remember(reg.host, desc.digest, repo)
            return "sent"

    def know(self, ref: Reference, digest: str) -> None:
        """Blob ``digest`` is in ``ref``'s repository (checked by the caller): pushes of it
        there are skipped, pushes elsewhere on that registry mount it from there."""
        self._remember(self.registries.get(ref.domain).host, digest, ref.path)

    def _remember(self, host: str, digest: str, repo: str) -> None:
        with self._guard:
            self._known.setdefault((host, digest), repo)
            self._present.add((host, repo, digest))

    def put_manifest(
        self, ref: Reference, identifier: str, manifest: Manifest, *, top: bool = False
    ) -> None:
        self.registries.get(ref.domain).put_manifest(ref.path, identifier, manifest)
