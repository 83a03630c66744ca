"""The copier: images from a source store to a sink store, byte for byte, in parallel.

For each planned image: fetch the manifest (an index brings its children, and indexes inside
indexes theirs, to any depth up to ``MAX_INDEX_DEPTH``), skip the whole
image when the target already names the same digest, otherwise send every blob the target
lacks (in parallel across images, each blob once per registry: later repositories mount it)
and then the manifests, children first, exactly as fetched. A failure in one image is
recorded and the others go on.

Each image is read (its manifests, and whether the target already has it) and then sent, by
two pools so that images already read are sent while others are still being read; once every
image has been read the number of bytes to move is known and reported, once (so an ETA drawn
from it does not jump). A cancel (Ctrl-C, see
:mod:`kferry.interrupt`) stops it promptly: blob streams stop at their next chunk, backoff
waits end, images not started are not started; what completed is returned as such and the
rest as ``interrupted``. Workers still stuck in a request after a short grace are abandoned
(the process is ending).

A rerun with the lock of an earlier run (``known``) asks less: an image the lock records is
checked with two HEADs sent together, the source by its tag (a tag moved at the source is
still noticed: the HEAD gives the digest it names now) and the target by the recorded digest
or tag. When both name the recorded digest the image is skipped without reading its manifest
or walking an index's children (size and media type come from the lock); otherwise it is
copied as without a lock. Entries whose digest a ``--platform`` filter changed, and indexes
while ``--platform`` is given, always take the full path (the filter decides the digest).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar

from kferry import interrupt
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
    status: str = "pending"  # copied | skipped | failed | interrupted
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

    @property
    def done(self) -> bool:
        """The image is complete where it was copied to (copied now, or already there)."""
        return self.status in ("copied", "skipped")

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
    """What the copier (and the pipeline around it) reports while it works; the CLI draws
    bars or prints lines from it. Called from worker threads."""

    def start(self, images: int) -> None:
        """``images`` images are about to be looked at."""

    def sized(self, total: int) -> None:
        """Every manifest has been read: ``total`` blob bytes are to be moved (images already
        at the target are not counted)."""

    def image_started(self, result: ImageResult, size: int) -> None:
        """``result``'s blobs (``size`` bytes) start moving."""

    def image_done(self, result: ImageResult) -> None:
        """``result`` is final: copied, skipped, failed or interrupted."""

    def bytes_done(self, n: int) -> None:
        """``n`` more blob bytes are at the target (negative: a failed attempt's bytes)."""

    def phase(self, name: str, detail: str = "") -> None:
        """A stage of its own begins (``reading bundle``, ``packing``...)."""

    def phase_done(self, name: str, detail: str = "") -> None:
        """That stage ended."""

    def notice(self, message: str) -> None:
        """Something the operator must know now (the run is stopping)."""


class Cancelled(Exception):
    """The run was interrupted: raised in worker threads to stop what they are doing."""


# How long workers get, after a cancel, to notice it before the run gives up on them.
CANCEL_GRACE = 3.0

T = TypeVar("T")


@dataclass
class _Work:
    """An image whose manifests were read and that the target lacks: what to send."""

    top: Manifest
    children: list[Manifest]
    blobs: dict[str, Descriptor]
    ident: str
    blob_bytes: int


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
        cancel: threading.Event | None = None,
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
        self.cancel = cancel or threading.Event()
        self._blob_pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="kferry-blob")
        self._lock = threading.Lock()

    def run(self, planned: Sequence[Planned]) -> list[ImageResult]:
        """Copy every planned image. A Ctrl-C (KeyboardInterrupt in this, the main, thread)
        cancels the run: the results then say which images completed and which were
        ``interrupted``; a second Ctrl-C ends the process at once."""
        results = [ImageResult(p.source, p.target) for p in planned]
        self.progress.start(len(results))
        readers = ThreadPoolExecutor(self.jobs, thread_name_prefix="kferry-manifest")
        senders = ThreadPoolExecutor(self.jobs, thread_name_prefix="kferry-image")
        reads: list[Future[None]] = []
        sends: list[Future[None]] = []
        sized = 0

        referrers = ReferrerCopy(self, senders) if self.referrers else None

        def looked_up(result: ImageResult) -> None:
            # an image's referrers are looked up as soon as it is there, while others copy
            if referrers is not None and result.done and result.digest:
                referrers.prefetch(result)

        def send(result: ImageResult, work: _Work) -> None:
            self._guarded(result, lambda: self._send(result, work))
            looked_up(result)

        def read(result: ImageResult) -> None:
            nonlocal sized
            work = self._guarded(result, lambda: self._resolve(result))
            if work is None:
                looked_up(result)
                return
            with self._lock:
                sized += work.blob_bytes
                sends.append(senders.submit(send, result, work))

        try:
            reads = [readers.submit(read, r) for r in results]
            self._wait(reads)
            self.progress.sized(sized)
            self._wait(list(sends))
            if referrers is not None:  # what belongs to each image, once the images are there
                referrers.run(results)
        except KeyboardInterrupt:
            with self._lock:
                pending = [*reads, *sends]
            return self._interrupted(results, pending)
        finally:
            stop = self.cancel.is_set()
            for pool in (readers, senders, self._blob_pool):
                pool.shutdown(wait=not stop, cancel_futures=True)
        return results

    @staticmethod
    def _wait(futures: Sequence[Future[None]]) -> None:
        for f in futures:
            f.result()

    def _interrupted(
        self, results: list[ImageResult], pending: Sequence[Future[None]]
    ) -> list[ImageResult]:
        """Cancel: workers stop at their next chunk or request; those still busy after
        :data:`CANCEL_GRACE` seconds are abandoned. Returns a snapshot of the results that
        no worker touches any more (unfinished images are ``interrupted``)."""
        interrupt.hard_exit_on_next()
        self.cancel.set()
        self.progress.notice("kferry: stopping (Ctrl-C again to stop at once)")
        for f in pending:
            f.cancel()
        _, busy = wait(pending, timeout=CANCEL_GRACE)
        if busy:
            interrupt.abandon_workers()
        with self._lock:
            snapshot = [dataclasses.replace(r, notes=list(r.notes)) for r in results]
        for r in snapshot:
            if r.status == "pending":  # not started, or abandoned inside a request
                r.status = "interrupted"
        return snapshot

    def _copy_guarded(self, result: ImageResult) -> None:
        """One image from start to end in the calling thread (the referrer pass copies each
        referrer so). A referrer (``result.kind``) is never reported as an image."""
        work = self._guarded(result, lambda: self._resolve(result))
        if work is not None:
            self._guarded(result, lambda: self._send(result, work))

    def _guarded(self, result: ImageResult, step: Callable[[], T]) -> T | None:
        """Run one step of one image; a failure is recorded on the image (the others go
        on) and reported as its end."""
        try:
            return step()
        except Cancelled:
            result.status, result.error = "interrupted", ""
        except KferryError as exc:
            result.status, result.error = "failed", str(exc)
        except Exception as exc:  # keep the others going; the summary names the failure
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        if self.cancel.is_set() and result.status == "failed":
            result.status, result.error = "interrupted", ""  # a request cut by the cancel
        self._done(result)
        return None

    def _bytes(self, result: ImageResult, n: int) -> None:
        if not result.kind:  # the byte total counts the images' bytes
            self.progress.bytes_done(n)

    def _done(self, result: ImageResult) -> None:
        if not result.kind:  # referrers travel with their image, not as images
            self.progress.image_done(result)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def _resolve(self, result: ImageResult) -> _Work | None:
        """Read the image's manifests and ask the target whether it has them; None when it
        does (the image is skipped and reported done)."""
        self._check_cancel()
        src, dst = result.source, result.target
        algorithm = src.digest_algorithm
        if algorithm is not None and algorithm != COPYABLE_DIGEST:
            raise RegistryError(
                f"{src.canonical}: named by a {algorithm} digest; kferry copies images named by "
                f"tag or by {COPYABLE_DIGEST} digest only (registries address manifests by "
                f"{COPYABLE_DIGEST}): name it by its tag or its {COPYABLE_DIGEST} digest"
            )
        if self._unchanged(result):
            self._done(result)
            return None
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

        self._check_cancel()
        existing = self.sink.manifest_digest(dst.at(ident))
        if existing == top.digest:
            result.status = "skipped"
            result.bytes_skipped = result.size
            self._done(result)
            return None
        blob_bytes = sum(b.size for b in blobs.values() if not b.foreign)
        return _Work(top, children, blobs, ident, blob_bytes)

    def _send(self, result: ImageResult, work: _Work) -> None:
        """Every blob the target lacks, then the manifests, children first."""
        self._check_cancel()
        dst = result.target
        if not result.kind:
            self.progress.image_started(result, work.blob_bytes)
        futures: list[Future[None]] = []
        for blob in work.blobs.values():
            if blob.foreign:
                result.notes.append(
                    f"non-distributable layer {blob.digest} skipped (pulled from its URLs)"
                )
                continue
            futures.append(self._blob_pool.submit(self._copy_blob, result, blob))
        done, _ = wait(futures)
        errors = [f.exception() for f in done if f.exception() is not None]
        if any(f.cancelled() for f in futures):
            raise Cancelled()
        if errors:
            raise errors[0]  # type: ignore[misc]
        # Once every blob is there, the manifests (a few small requests) are put even after
        # a cancel: the image is then complete and recorded as such.
        for child in work.children:
            self.sink.put_manifest(dst.at(child.digest), child.digest, child)
        self.sink.put_manifest(dst.at(work.ident), work.ident, work.top, top=True)
        with self._lock:
            result.status = "copied"
        self._done(result)

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
            if self.cancel.is_set():
                raise Cancelled()  # stops the stream (and its request) at this chunk
            sent += n
            self._bytes(result, n)

        self._check_cancel()

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
                self._bytes(result, -sent)
                sent = 0
                damaged = isinstance(exc, DigestMismatch)  # bytes that lie: twice at most
                if attempt >= (1 if damaged else self.retries):
                    raise type(exc)(
                        f"blob {blob.digest}: gave up after {attempt + 1} attempts: {exc}"
                    ) from None
                if not damaged:
                    wait = exc.retry_after if isinstance(exc, TransientError) else None
                    if self.cancel.wait(backoff_delay(attempt, wait, self.backoff, self.max_wait)):
                        raise Cancelled() from None
                attempt += 1
        with self._lock:
            if outcome == "sent":
                result.bytes_sent += blob.size
            else:
                result.bytes_skipped += blob.size
                self._bytes(result, blob.size)
