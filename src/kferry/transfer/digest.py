"""Digest verification of a byte stream on its way through (registry or bundle to sink).

Hand-written because the check has to sit inside the stream: the last chunk is held back
until the digest and size check out, so that a damaged blob never completes an upload or a
rename; hashlib does the hashing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator

from kferry.transfer.errors import DigestMismatch, RegistryError


def verified(
    chunks: Iterable[bytes],
    digest: str,
    size: int,
    where: str,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Pass chunks through while hashing; the last chunk is held back until the digest and
    size check out, so a damaged stream never completes an upload."""
    algo, _, want = digest.partition(":")
    if algo != "sha256":
        raise RegistryError(f"{where}: unsupported digest algorithm {algo}")
    h = hashlib.sha256()
    seen = 0
    held: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        h.update(chunk)
        seen += len(chunk)
        if seen > size:
            raise DigestMismatch(f"{where}: {digest} is longer than its {size} bytes")
        if held is not None:
            if on_bytes:
                on_bytes(len(held))
            yield held
        held = chunk
    if seen != size or h.hexdigest() != want:
        raise DigestMismatch(
            f"{where}: {digest} arrived damaged ({seen} of {size} bytes, "
            f"sha256:{h.hexdigest()[:12]}...)"
        )
    if held is not None:
        if on_bytes:
            on_bytes(len(held))
        yield held
