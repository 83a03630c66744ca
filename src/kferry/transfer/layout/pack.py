"""Packing a layout into a ``.tar``/``.tar.zst`` and unpacking a ``.tar.zst`` (streamed)."""

from __future__ import annotations

import contextlib
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import zstandard

from kferry.atomic import atomic_file
from kferry.errors import InputError, KferryError
from kferry.transfer.layout.index import BASE_FILE, READ_CHUNK
from kferry.transfer.layout.volumes import HashingFile, VolumeWriter, open_bundle_file, write_sha


def pack(root: Path, out: Path, zstd: bool, split: int | None = None) -> Path:
    """``oci-layout`` and ``index.json`` first (readers can stream), then every blob; written
    to ``.OUT.kferry-pack-*`` and renamed (a killed run's file is removed by the next), with
    ``OUT.sha256`` beside it; or, with ``split``, cut into volumes (:mod:`.volumes`). Returns
    the single file or the volume manifest."""
    if split is not None:
        volumes = VolumeWriter(out, split)
        try:
            _pack_into(root, volumes, zstd)  # type: ignore[arg-type]
        except BaseException:
            volumes.abort()
            raise
        return volumes.finish()
    with atomic_file(out, prefix=f".{out.name}.kferry-pack-") as raw:
        hashing = HashingFile(raw)
        _pack_into(root, hashing, zstd)  # type: ignore[arg-type]
    write_sha(out, hashing.hash.hexdigest())
    return out


def _pack_into(root: Path, raw: IO[bytes], zstd: bool) -> None:
    stream: IO[bytes] = raw
    cctx = None
    if zstd:
        cctx = zstandard.ZstdCompressor(level=3, threads=-1)
        stream = cctx.stream_writer(raw, closefd=False)
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in ["oci-layout", "index.json", BASE_FILE]:
            if rel == BASE_FILE and not (root / rel).exists():
                continue  # a full bundle: no base
            tar.add(root / rel, arcname=rel, recursive=False)
        blobs = sorted((root / "blobs" / "sha256").iterdir())
        for p in blobs:
            if p.name.endswith(".partial"):
                continue
            tar.add(p, arcname=f"blobs/sha256/{p.name}", recursive=False)
    if cctx is not None:
        stream.close()


@contextlib.contextmanager
def zst_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """A ``.tar.zst`` opened as a tar stream (members in order, no seeking)."""
    dctx = zstandard.ZstdDecompressor()
    with (
        open_bundle_file(path) as raw,
        dctx.stream_reader(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        yield tar


def unpack_zst(path: Path, dest: Path) -> None:
    try:
        with zst_tar(path) as tar:
            for member in tar:
                if not member.isfile() or not _safe_member(member.name):
                    continue
                target = dest / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out, READ_CHUNK)
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise InputError(f"{path}: damaged bundle: {exc}") from None
    except OSError as exc:
        raise KferryError(
            f"{path}: cannot unpack into {dest}: {exc.strerror or exc}; choose a place with "
            "room for the unpacked bundle with --tmp-dir DIR (or TMPDIR)"
        ) from None


def _safe_member(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts
