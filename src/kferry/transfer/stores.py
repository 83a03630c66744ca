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
from typing import Literal, Protocol

from kferry.name import Reference
from kferry.transfer.digest import verified
from kferry.transfer.media import Descriptor, Manifest
from kferry.transfer.registry import Registries

BlobOutcome = Literal["sent", "mounted", "exists"]
BlobOpener = Callable[[], AbstractContextManager[Iterator[bytes]]]
OnBytes = Callable[[int], None]


class ImageSource(Protocol):
    def get_manifest(self, ref: Reference) -> Manifest: ...

    def get_child(self, ref: Reference, digest: str) -> Manifest: ...

    def open_blob(
        self, ref: Reference, desc: Descriptor
    ) -> AbstractContextManager[Iterator[bytes]]: ...


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
        self._guard = threading.Lock()

    # -- source -------------------------------------------------------------------------------
    def get_manifest(self, ref: Reference) -> Manifest:
        return self.registries.get(ref.domain).get_manifest(ref.path, _identifier(ref))

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
