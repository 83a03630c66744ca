"""The copier: images from a source store to a sink store, byte for byte, in parallel.

For each planned image: fetch the manifest (an index brings its children, and indexes inside
indexes theirs, to any depth up to ``MAX_INDEX_DEPTH``), skip the whole
image when the target already names the same digest, otherwise send every blob the target
lacks (in parallel across images, each blob once per registry: later repositories mount it)
and then the manifests, children first, exactly as fetched. A failure in one image is
recorded and the others go on.

A rerun with the lock of an earlier run (``known``) asks less: an image the lock records is
checked with two HEADs sent together, the source by its tag (a tag moved at the source is
still noticed: the HEAD gives the digest it names now) and the target by the recorded digest
or tag. When both name the recorded digest the image is skipped without reading its manifest
or walking an index's children (size and media type come from the lock); otherwise it is
copied as without a lock. Entries whose digest a ``--platform`` filter changed, and indexes
while ``--platform`` is given, always take the full path (the filter decides the digest).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from kferry.errors import KferryError
from kferry.name import Reference
from kferry.plan import Lock, LockEntry, Planned
from kferry.plan.lock import LockReferrer
from kferry.transfer.errors import DigestMismatch, RegistryError, TransientError
from kferry.transfer.media import (
    COPYABLE_DIGEST,
    INDEX_TYPES,
    MAX_INDEX_DEPTH,
    MAX_MANIFESTS_PER_IMAGE,
    OCI_INDEX,
    Descriptor,
    Manifest,
    parse_manifest,
)
from kferry.transfer.referrer_copy import ReferrerCopy
from kferry.transfer.stores import DigestSource, ImageSink, ImageSource
from kferry.transfer.transport import backoff_delay


@dataclass
class ImageResult:
    source: Reference
    target: Reference
    status: str = "pending"  # copied | skipped | failed
    digest: str = ""
    media_type: str = ""
    size: int = 0
    source_digest: str = ""
    bytes_sent: int = 0
    bytes_skipped: int = 0
    error: str = ""
    notes: list[str] = field(default_factory=list)
    kind: str = ""  # a referrer's kind (sig, att, sbom, referrers); "" for an image
    referrers: list[ImageResult] = field(default_factory=list)

    def lock_entry(self, target: Reference | None = None) -> LockEntry:
        """What the lock records: the image at ``target`` (default: where it was copied),
        by the digest copied when the target names a digest."""
        where = target or self.target
        if where.digest and self.digest:
            where = where.with_digest(self.digest)
        return LockEntry(
            self.source,
            where,
            self.digest,
            self.media_type,
            self.size,
            self.source_digest,
            tuple(
                LockReferrer(r.target.tag or "", r.digest, r.kind)
                for r in self.referrers
                if r.status != "failed" and r.target.tag
            ),
        )


class Progress:
    """What the copier reports while it works; the CLI draws bars from it."""

    def image_started(self, result: ImageResult, size: int) -> None: ...

    def image_done(self, result: ImageResult) -> None: ...

    def bytes_done(self, n: int) -> None: ...


def _platform_ok(platform: str | None, wanted: Sequence[str]) -> bool:
    if not wanted:
        return True
    if platform is None:
        return False
    have = platform.split("/")
    for w in wanted:
        want = w.split("/")
        if have[: len(want)] == want:
            return True
    return False


def _filtered_index(top: Manifest, platforms: Sequence[str], where: str) -> Manifest | None:
    """The index with only the wanted platforms (None when all are kept)."""
    keep = [
        d
        for d in top.children
        if _platform_ok(d.platform, platforms)
        or (d.platform is None and d.media_type in INDEX_TYPES)
    ]
    if len(keep) == len(top.children):
        return None
    if not keep:
        have = ", ".join(sorted({d.platform or "?" for d in top.children}))
        raise RegistryError(f"{where}: no platform matches {', '.join(platforms)} (has {have})")
    doc = json.loads(top.raw)
    keep_digests = {d.digest for d in keep}
    doc["manifests"] = [m for m in doc["manifests"] if m.get("digest") in keep_digests]
    raw = json.dumps(doc, indent=2).encode()
    return parse_manifest(raw, top.media_type or OCI_INDEX, where)


def descendants(source: ImageSource, ref: Reference, top: Manifest) -> list[Manifest]:
    """Every manifest below ``top`` (each once), children before their parents."""
    seen = {top.digest}
    order: list[Manifest] = []

    def walk(m: Manifest, depth: int) -> None:
        for d in m.children:
            if d.digest in seen:
                continue
            if depth >= MAX_INDEX_DEPTH:
                raise RegistryError(
                    f"{ref.canonical}: indexes nested deeper than "
                    f"{MAX_INDEX_DEPTH} levels (at {d.digest}); refused"
                )
            if len(seen) >= MAX_MANIFESTS_PER_IMAGE:
                raise RegistryError(
                    f"{ref.canonical}: more than {MAX_MANIFESTS_PER_IMAGE} "
                    "manifests in one image; refused"
                )
            seen.add(d.digest)
            child = source.get_child(ref, d.digest)
            walk(child, depth + 1)
            order.append(child)

    walk(top, 1)
    return order


class Copier:
    def __init__(
        self,
        source: ImageSource,
        sink: ImageSink,
        *,
        jobs: int = 8,
        platforms: Sequence[str] = (),
        progress: Progress | None = None,
        retries: int = 6,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        referrers: bool = True,
        known: Lock | None = None,
    ) -> None:
        self.referrers = referrers
        self.known = known
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_wait = max_wait
        self.source = source
        self.sink = sink
        self.jobs = max(1, jobs)
        self.platforms = tuple(platforms)
        self.progress = progress or Progress()
        self._blob_pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="kferry-blob")
        self._lock = threading.Lock()

    def run(self, planned: Sequence[Planned]) -> list[ImageResult]:
        results = [ImageResult(p.source, p.target) for p in planned]
        try:
            with ThreadPoolExecutor(self.jobs, thread_name_prefix="kferry-image") as pool:
                referrers = ReferrerCopy(self, pool) if self.referrers else None

                def one(r: ImageResult) -> None:
                    self._copy_guarded(r)
                    if referrers is not None:
                        referrers.prefetch(r)

                futures = [pool.submit(one, r) for r in results]
                for f in futures:
                    f.result()
                if referrers is not None:
                    referrers.run(results)
        finally:
            self._blob_pool.shutdown(wait=True, cancel_futures=True)
        return results

    def _copy_guarded(self, result: ImageResult, report: bool = True) -> None:
        try:
            self._copy(result)
        except KferryError as exc:
            result.status, result.error = "failed", str(exc)
        except Exception as exc:  # keep the others going; the summary names the failure
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        if report:
            self.progress.image_done(result)

    def _copy(self, result: ImageResult) -> None:
        src, dst = result.source, result.target
        algorithm = src.digest_algorithm
        if algorithm is not None and algorithm != COPYABLE_DIGEST:
            raise RegistryError(
                f"{src.canonical}: named by a {algorithm} digest; kferry copies images named by "
                f"tag or by {COPYABLE_DIGEST} digest only (registries address manifests by "
                f"{COPYABLE_DIGEST}): name it by its tag or its {COPYABLE_DIGEST} digest"
            )
        if self._unchanged(result):
            return
        top = self.source.get_manifest(src)
        result.source_digest = top.digest
        if src.digest and top.digest != src.digest:
            raise RegistryError(f"{src.canonical}: source sent manifest {top.digest}")
        if self.platforms and top.media_type in INDEX_TYPES and not result.kind:
            # (a referrers list is an index of artifacts, not of platforms: never filtered)
            filtered = _filtered_index(top, self.platforms, src.canonical)
            if filtered is not None:
                result.notes.append(
                    f"filtered to {', '.join(self.platforms)}: digest {top.digest} -> "
                    f"{filtered.digest}; references by digest must change"
                )
                top = filtered
        result.digest, result.media_type = top.digest, top.media_type

        ident = top.digest if dst.digest else (dst.tag or "latest")
        children = self._descendants(result, top)
        blobs: dict[str, Descriptor] = {}
        for m in [top, *children]:
            for b in m.blobs:
                blobs.setdefault(b.digest, b)
        result.size = (
            top.size
            + sum(c.size for c in children)
            + sum(b.size for b in blobs.values() if not b.foreign)
        )

        existing = self.sink.manifest_digest(dst.at(ident))
        if existing == top.digest:
            result.status = "skipped"
            result.bytes_skipped = result.size
            return

        self.progress.image_started(result, result.size)
        futures: list[Future[None]] = []
        for blob in blobs.values():
            if blob.foreign:
                result.notes.append(
                    f"non-distributable layer {blob.digest} skipped (pulled from its URLs)"
                )
                continue
            futures.append(self._blob_pool.submit(self._copy_blob, result, blob))
        done, _ = wait(futures)
        errors = [f.exception() for f in done if f.exception() is not None]
        if errors:
            raise errors[0]  # type: ignore[misc]
        for child in children:
            self.sink.put_manifest(dst.at(child.digest), child.digest, child)
        self.sink.put_manifest(dst.at(ident), ident, top, top=True)
        result.status = "copied"

    def _unchanged(self, result: ImageResult) -> bool:
        """The image is where the lock says, as the lock says (see the module docstring);
        ``result`` is then filled in from the lock entry and marked skipped."""
        if self.known is None or result.kind or not isinstance(self.source, DigestSource):
            return False
        entry = self.known.entry(result.source)
        if (
            entry is None
            or not entry.digest
            or not entry.media_type
            or (entry.source_digest or entry.digest) != entry.digest
            or (self.platforms and entry.media_type in INDEX_TYPES)
        ):
            return False
        dst = result.target
        recorded = dst.with_digest(entry.digest) if dst.digest else dst
        if entry.target.canonical != recorded.canonical:
            return False  # recorded for another target
        ident = entry.digest if dst.digest else (dst.tag or "latest")
        at_target = self._blob_pool.submit(self.sink.manifest_digest, dst.at(ident))
        if self.source.source_digest(result.source) != entry.digest:
            return False  # (the target's answer is not needed then)
        if at_target.result() != entry.digest:
            return False
        result.digest = result.source_digest = entry.digest
        result.media_type, result.size = entry.media_type, entry.size
        result.status, result.bytes_skipped = "skipped", entry.size
        return True

    def _descendants(self, result: ImageResult, top: Manifest) -> list[Manifest]:
        return descendants(self.source, result.source, top)

    def _copy_blob(self, result: ImageResult, blob: Descriptor) -> None:
        sent = 0

        def on_bytes(n: int) -> None:
            nonlocal sent
            sent += n
            self.progress.bytes_done(n)

        # A blob whose stream broke (either side), whose upload got 5xx/429 or whose token
        # expired is started again from scratch (new session, new token), with backoff.
        attempt = 0
        while True:
            try:
                outcome = self.sink.put_blob(
                    result.target,
                    blob,
                    lambda: self.source.open_blob(result.source, blob),
                    on_bytes,
                )
                break
            except (TransientError, DigestMismatch) as exc:
                self.progress.bytes_done(-sent)
                sent = 0
                damaged = isinstance(exc, DigestMismatch)  # bytes that lie: twice at most
                if attempt >= (1 if damaged else self.retries):
                    raise type(exc)(
                        f"blob {blob.digest}: gave up after {attempt + 1} attempts: {exc}"
                    ) from None
                if not damaged:
                    wait = exc.retry_after if isinstance(exc, TransientError) else None
                    time.sleep(backoff_delay(attempt, wait, self.backoff, self.max_wait))
                attempt += 1
        with self._lock:
            if outcome == "sent":
                result.bytes_sent += blob.size
            else:
                result.bytes_skipped += blob.size
                self.progress.bytes_done(blob.size)
