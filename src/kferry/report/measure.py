"""Sizes, digests and registry state of report rows, from manifests and indexes only.

No blob is ever fetched: an image's size is the sum of the descriptor sizes its manifests list
(config and layers, plus the manifests themselves), counted once per distinct blob over the
platforms chosen. An image without an index is one platform whose name would need its config
blob, so it is shown as ``single``; ``--platform`` keeps it as ``kferry mirror`` does.

Offline is a normal case (the report is often made on a machine that reaches no registry):
the first failure to reach a host (network, TLS, credentials) is recorded once for that host,
every image there is marked with that reason, and nothing else is asked of it. An image the
registry does not have (404) or cannot be read (schema 1) is marked on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from kferry.name import Reference
from kferry.plan import PlanError, Target, plan_one
from kferry.report.model import PlatformSize, Row
from kferry.transfer.errors import NotFound, RegistryError
from kferry.transfer.media import INDEX_TYPES, Manifest, ManifestError
from kferry.transfer.registry import Registries


def platform_matches(platform: str | None, wanted: Sequence[str]) -> bool:
    """``linux/arm64`` matches ``linux/arm64/v8`` (the prefix rule ``kferry mirror`` uses)."""
    if not wanted:
        return True
    if platform is None:
        return False
    have = platform.split("/")
    return any(have[: len(w.split("/"))] == w.split("/") for w in wanted)


class _Hosts:
    """The first reason each host could not be reached; later images there are not tried."""

    def __init__(self) -> None:
        self.down: dict[str, str] = {}
        self._lock = threading.Lock()

    def reason(self, host: str) -> str | None:
        """What a row says when ``host`` is down (the full reason is in the warnings)."""
        with self._lock:
            return f"{host} not reachable (see warnings)" if host in self.down else None

    def mark(self, host: str, reason: str) -> None:
        with self._lock:
            self.down.setdefault(host, reason)


def _sizes(
    registries: Registries, ref: Reference, top: Manifest, platforms: Sequence[str]
) -> tuple[int, list[PlatformSize], str | None]:
    reg = registries.get(ref.domain)
    if top.media_type not in INDEX_TYPES:
        size = top.size + sum(b.size for b in top.blobs)
        return size, [PlatformSize("single", top.digest, size)], None
    chosen = [d for d in top.children if platform_matches(d.platform, platforms)]
    if not chosen:
        have = ", ".join(sorted({d.platform or "?" for d in top.children}))
        return 0, [], f"no platform matches {', '.join(platforms)} (has {have})"
    seen: dict[str, int] = {}
    total = top.size
    out = []
    for desc in chosen:
        child = reg.get_manifest(ref.path, desc.digest)
        blobs = list(child.blobs)
        if child.media_type in INDEX_TYPES:  # nested index: one more level, all platforms
            for grand in child.children:
                blobs += reg.get_manifest(ref.path, grand.digest).blobs
        size = child.size + sum(b.size for b in blobs)
        out.append(PlatformSize(desc.platform or "unknown", desc.digest, size))
        total += child.size
        for b in blobs:
            seen[b.digest] = b.size
    return total + sum(seen.values()), out, None


def _measure(registries: Registries, hosts: _Hosts, row: Row, platforms: Sequence[str]) -> None:
    ref = row.reference
    down = hosts.reason(ref.domain)
    if down is not None:
        row.unknown = down
        return
    try:
        top = registries.get(ref.domain).get_manifest(ref.path, ref.identifier)
        row.digest, row.media_type = top.digest, top.media_type
        size, sizes, why = _sizes(registries, ref, top, platforms)
    except NotFound as exc:
        row.unknown = str(exc)
        return
    except ManifestError as exc:
        row.unknown = str(exc)
        return
    except RegistryError as exc:
        hosts.mark(ref.domain, str(exc))
        row.unknown = hosts.reason(ref.domain)
        return
    row.platforms = sizes
    if why is not None:
        row.unknown = why
    else:
        row.size = size


def _presence(registries: Registries, hosts: _Hosts, row: Row, to: Target) -> None:
    try:
        target = plan_one(row.reference, to)
    except PlanError as exc:
        row.presence, row.presence_note = "unknown", str(exc)
        return
    row.target = target.canonical
    down = hosts.reason(target.domain)
    if down is not None:
        row.presence, row.presence_note = "unknown", down
        return
    try:
        have = registries.get(target.domain).manifest_digest(target.path, target.identifier)
    except RegistryError as exc:
        hosts.mark(target.domain, str(exc))
        row.presence, row.presence_note = "unknown", hosts.reason(target.domain)
        return
    if have is None:
        row.presence = "missing"
    elif row.digest is None:
        row.presence, row.presence_note = "present", f"{have} (source digest unknown)"
    elif have == row.digest:
        row.presence = "present"
    else:
        row.presence = "other-digest"
        row.presence_note = (
            f"the registry has {have}, the source {row.digest} "
            "(a --platform filtered copy, or the tag moved)"
        )


def measure(
    rows: Sequence[Row],
    registries: Registries,
    platforms: Sequence[str] = (),
    to: Target | None = None,
    jobs: int = 8,
) -> list[str]:
    """Fill sizes, digests and (with ``to``) presence in place; returns one warning per host
    that could not be reached."""
    hosts = _Hosts()

    def one(row: Row) -> None:
        _measure(registries, hosts, row, platforms)
        if to is not None:
            _presence(registries, hosts, row, to)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, rows))
    return [reason for _, reason in sorted(hosts.down.items())]
