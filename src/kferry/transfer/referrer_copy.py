"""The copier's second pass: what belongs to each copied image (see :mod:`.referrers`).

After the images, each one's signatures, attestations, SBOMs and OCI referrers are looked up
in the source (in parallel) and copied into the image's target repository under their tags,
through the same copier (blobs deduplicated with the images'). Referrers of referrers are
followed :data:`~kferry.transfer.referrers.MAX_ROUNDS` levels deep. A referrer that cannot be
copied fails its image: what the security office asked for must not stay behind in silence.
An image whose digest ``--platform`` changed keeps none (they name the unfiltered digest),
and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from kferry.errors import KferryError
from kferry.transfer.errors import NotFound
from kferry.transfer.media import Manifest
from kferry.transfer.referrers import (
    KIND_REFERRERS,
    MAX_PER_SUBJECT,
    MAX_ROUNDS,
    Found,
    ManifestReader,
    ReferrerSink,
    ReferrerSource,
    covers,
    merged_list,
)

if TYPE_CHECKING:
    from kferry.transfer.copy import Copier, ImageResult

# (the image that owns it, the subject: that image or a referrer of it, the subject's digest)
_Subject = tuple["ImageResult", "ImageResult", str]
_Item = tuple["ImageResult", "ImageResult", Found]


class ReferrerCopy:
    """Built before the images are copied: :meth:`prefetch` looks up an image's referrers as
    soon as the image is done (in the image's thread, so the lookups overlap the other
    images' copies), :meth:`run` then copies what was found."""

    def __init__(self, copier: Copier, pool: ThreadPoolExecutor) -> None:
        self.copier = copier
        self.pool = pool
        self._found: dict[int, list[Found]] = {}  # id(image result) -> its first lookup

    @staticmethod
    def _looked_up(r: ImageResult) -> bool:
        """Whether the referrers of this copied image are looked up (see ``run``)."""
        return (
            r.status != "failed"
            and bool(r.digest)
            and not (r.source_digest and r.digest != r.source_digest)
        )

    def prefetch(self, r: ImageResult) -> None:
        source = self.copier.source
        if isinstance(source, ReferrerSource) and self._looked_up(r):
            self._found[id(r)] = self._find(source, (r, r, r.digest))

    def run(self, results: Sequence[ImageResult]) -> None:
        source = self.copier.source
        if not isinstance(source, ReferrerSource):
            return
        todo: list[_Subject] = []
        for r in results:
            if r.status == "failed" or not r.digest:
                continue
            if not self._looked_up(r):
                r.notes.append(
                    "signatures, attestations and SBOMs not copied: --platform changed the "
                    "image's digest, and they name the unfiltered one"
                )
                continue
            todo.append((r, r, r.digest))
        seen: set[str] = set()
        for _ in range(MAX_ROUNDS):
            if not todo:
                break
            batch: list[_Item] = []

            def lookup(t: _Subject) -> list[Found]:
                if t[0] is t[1] and id(t[0]) in self._found:
                    return self._found.pop(id(t[0]))  # looked up while the images went on
                return self._find(source, t)

            for (owner, subject, _digest), found in zip(
                todo, self.pool.map(lookup, todo), strict=True
            ):
                for f in found[:MAX_PER_SUBJECT]:
                    target = subject.target.at(f.ref.tag or "")
                    if target.canonical in seen:
                        continue
                    seen.add(target.canonical)
                    item = type(owner)(f.ref, target, kind=f.kind)
                    owner.referrers.append(item)
                    batch.append((owner, item, f))
            nexts = self.pool.map(self._copy_one, batch)
            todo = [t for group in nexts for t in group]
        for r in results:
            bad = next((x for x in r.referrers if x.status == "failed"), None)
            if bad is not None and r.status != "failed":
                r.status = "failed"
                r.error = f"its {bad.kind} {bad.source.canonical} was not copied: {bad.error}"

    def _find(self, source: ReferrerSource, subject: _Subject) -> list[Found]:
        owner, of, digest = subject
        try:
            return source.find_referrers(of.source, digest)
        except (KferryError, ValueError) as exc:  # ValueError: a list that is no manifest
            failed = type(owner)(of.source, of.target, kind="referrers lookup")
            failed.status, failed.error = "failed", str(exc)
            owner.referrers.append(failed)
            return []

    def _copy_one(self, item: _Item) -> list[_Subject]:
        """Copy one referrer; the subjects whose referrers the next round looks up."""
        owner, result, found = item
        copier, sink = self.copier, self.copier.sink
        before: Manifest | None = None
        try:
            if found.kind == KIND_REFERRERS and isinstance(sink, ManifestReader):
                ours = copier.source.get_manifest(result.source)
                try:
                    before = sink.get_manifest(result.target)
                except NotFound:
                    before = None
                if before is not None and covers(before, ours):
                    result.status, result.digest = "skipped", before.digest
                    result.source_digest, result.media_type = ours.digest, ours.media_type
                    return self._next(owner, result, ours)
            copier._copy_guarded(result)
            if result.status == "failed":
                return []
            if found.kind != KIND_REFERRERS:
                return []
            ours = copier.source.get_manifest(result.source)
            if before is not None and result.status == "copied":
                # The target listed referrers we do not have: keep them listed.
                merged = merged_list(ours, before, result.target.canonical)
                sink.put_manifest(result.target, result.target.tag or "", merged, top=True)
                result.digest = merged.digest
            return self._next(owner, result, ours)
        except (KferryError, ValueError) as exc:
            result.status, result.error = "failed", str(exc)
            return []
        finally:
            if result.status != "failed" and isinstance(sink, ReferrerSink):
                sink.mark_referrer(result.target, found)

    @staticmethod
    def _next(owner: ImageResult, result: ImageResult, listing: Manifest) -> list[_Subject]:
        return [(owner, result, d.digest) for d in listing.children]
