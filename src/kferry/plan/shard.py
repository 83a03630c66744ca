"""``--shard I/N``: one of N disjoint parts of a transfer, the same on every host.

An image belongs to shard ``int(sha256(canonical source reference)) mod N``: a stable hash, so
every host (or every pod of a Kubernetes Indexed Job, whose ``JOB_COMPLETION_INDEX`` counts
from 0) computes the same split from the same image list, whatever its order, without talking
to the others; the N shards together are the whole list and no image is in two. Blobs shared
inside a shard are sent once by that shard's copier; across shards the registry's own
dedupe applies (a blob already there is not sent again). Each shard writes its own lock file;
``kferry lock merge`` joins them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from kferry.errors import InputError
from kferry.name import Reference

_SHARD = re.compile(r"(\d{1,6})/(\d{1,6})")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (0 to ``count`` - 1) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = _SHARD.fullmatch(text.strip())
        if m is None:
            raise InputError(f"--shard {text!r}: expected I/N, e.g. 0/3 (I counts from 0)")
        index, count = int(m.group(1)), int(m.group(2))
        if count < 1 or index >= count:
            raise InputError(f"--shard {text}: I must be between 0 and N-1 (N >= 1)")
        return cls(index, count)

    def holds(self, ref: Reference) -> bool:
        h = hashlib.sha256(ref.canonical.encode()).digest()
        return int.from_bytes(h[:8], "big") % self.count == self.index

    def select(self, refs: Iterable[Reference]) -> list[Reference]:
        """This shard's images, in their order."""
        return [r for r in refs if self.holds(r)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
