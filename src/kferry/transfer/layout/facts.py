"""What ``bundle save`` tells the operator about the bundle it finished: where, how big, and the
checksum to compare on the other side of the air gap."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from kferry.transfer.layout.volumes import MANIFEST_SUFFIX, read_manifest, sha_path


@dataclass(frozen=True)
class BundleFacts:
    """``path``: the single file, the volume manifest or the directory; ``sha256``: of the
    single file (as ``NAME.sha256`` says) or of the volume manifest (which holds each
    volume's sha256); None for a directory."""

    path: Path
    kind: str  # file | volumes | dir
    size: int
    sha256: str | None
    volumes: int = 0
    sha_file: Path | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
            "volumes": self.volumes,
            "sha256_file": str(self.sha_file) if self.sha_file else None,
        }


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def bundle_facts(path: Path) -> BundleFacts:
    """Facts about a finished bundle at ``path`` (what :meth:`LayoutWriter.finish` returned)."""
    if path.is_dir():
        size = 0
        for root, _, files in os.walk(path):
            for name in files:
                size += os.lstat(os.path.join(root, name)).st_size
        return BundleFacts(path, "dir", size, None)
    if path.name.endswith(MANIFEST_SUFFIX):
        vs = read_manifest(path)
        return BundleFacts(
            path, "volumes", sum(v.size for v in vs.volumes), _file_sha(path), len(vs.volumes)
        )
    sp = sha_path(path)
    sha = None
    if sp.is_file():
        words = sp.read_text(errors="replace").split()
        sha = words[0] if words else None
    return BundleFacts(
        path, "file", path.stat().st_size, sha or _file_sha(path), sha_file=sp if sha else None
    )
