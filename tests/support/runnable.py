"""Runnable test images: Debian's static busybox (``busybox-static``, installed by
``scripts/system-deps``) in one layer, pushed with raw registry API calls like
:mod:`tests.support.images`, or written as an OCI archive that ``ctr images import`` reads
(the node's pause image).

A runnable image is small (about 1 MB compressed) and its layer is byte-for-byte the same
on every call (fixed mtimes, owners and order; gzip without a timestamp), so every image
built here shares that one blob; each image still gets a digest of its own through its
config (``Entrypoint``/``Cmd``/labels). Multi-arch indexes list the same amd64 busybox under
every platform: only linux/amd64 is ever run here (this node's architecture), the others
exist for the index's shape.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.images import (
    _LAYER,
    _MEDIA,
    Blob,
    Media,
    PushedImage,
    _serialize,
    push_blob,
    push_index,
    push_manifest,
    sha256_digest,
)
from tests.support.registry import Registry

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
# Applets the images link (busybox --install would need a running busybox of the target).
APPLETS = ("sh", "sleep", "cat", "echo", "ls", "true", "false", "wget", "nc", "env", "id", "ps")
FOREVER = ("/bin/sleep", "2147483647")


class RunnableError(RuntimeError):
    """No static busybox here: ``scripts/system-deps`` installs it."""


def _has_interpreter(elf: bytes) -> bool:
    """A 64-bit little-endian ELF with a PT_INTERP program header (dynamically linked)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return True  # not what we can run: treat as unusable
    phoff = int.from_bytes(elf[32:40], "little")
    phentsize = int.from_bytes(elf[54:56], "little")
    phnum = int.from_bytes(elf[56:58], "little")
    for i in range(phnum):
        start = phoff + i * phentsize
        if int.from_bytes(elf[start : start + 4], "little") == 3:  # PT_INTERP
            return True
    return False


def busybox_path() -> Path:
    """The static busybox binary (``busybox-static``), refusing a dynamically linked one (it
    would not run in an image without a libc)."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and not _has_interpreter(path.read_bytes()[:65536]):
            return path
    found = shutil.which("busybox")
    raise RunnableError(
        f"no static busybox (found {found or 'none'}): run scripts/system-deps (busybox-static)"
    )


def _shared_libraries(binary: Path) -> list[Path]:
    """The loader and libraries ``ldd`` lists for a dynamically linked binary."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    found = []
    for line in proc.stdout.splitlines():
        for word in line.split():
            if word.startswith("/") and Path(word).exists():
                found.append(Path(word))
    return sorted(set(found))


def program_layer(binary: Path, dest: str) -> bytes:
    """A layer with ``binary`` at ``dest`` and the shared libraries it needs at their paths
    (what a distroless image holds), to stack over :func:`busybox_layer`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for path, name in [(binary, dest.lstrip("/"))] + [
            (lib, str(lib).lstrip("/")) for lib in _shared_libraries(binary)
        ]:
            parts = Path(name).parts
            for i in range(1, len(parts)):
                directory = "/".join(parts[:i])
                if directory not in seen and directory not in ("bin", "etc", "tmp"):
                    seen.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            data = path.resolve().read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def push_program(
    registry: Registry,
    repo: str,
    binary: Path,
    *,
    tag: str,
    dest: str = "/usr/local/bin/program",
    cmd: Sequence[str] = (),
) -> PushedImage:
    """Push an image of busybox plus a real program (Dex, say) with its libraries."""
    layers = [
        Blob.of(busybox_layer(), _LAYER["oci"]),
        Blob.of(program_layer(binary, dest), _LAYER["oci"]),
    ]
    document = json.loads(runnable_config(cmd=cmd or (dest,)))
    document["config"]["Env"] = ["PATH=/usr/local/bin:/bin"]
    document["rootfs"]["diff_ids"] = [sha256_digest(gzip.decompress(b.data)) for b in layers]
    document["history"] = document["history"] * 2
    config = Blob.of(
        json.dumps(document, indent=2, sort_keys=True).encode(), _MEDIA["oci"]["config"]
    )
    manifest_bytes = _serialize(
        {
            "schemaVersion": 2,
            "mediaType": _MEDIA["oci"]["manifest"],
            "config": config.descriptor(),
            "layers": [b.descriptor() for b in layers],
        }
    )
    with registry.client() as c:
        for blob in (*layers, config):
            push_blob(c, repo, blob.data)
        push_manifest(c, repo, tag, manifest_bytes, _MEDIA["oci"]["manifest"])
    return PushedImage(
        host=registry.host,
        repo=repo,
        tag=tag,
        digest=sha256_digest(manifest_bytes),
        manifest_bytes=manifest_bytes,
        media_type=_MEDIA["oci"]["manifest"],
        size=len(manifest_bytes),
        blobs=(config, *layers),
        config=config,
        layers=tuple(layers),
    )


@functools.cache
def busybox_layer() -> bytes:
    """The gzip-compressed layer tar: ``/bin/busybox``, applet links, ``/etc/passwd``,
    ``/tmp``; the same bytes on every call."""
    binary = busybox_path().read_bytes()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(
            name: str, kind: bytes, data: bytes = b"", mode: int = 0o755, link: str = ""
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.mtime = 0
            info.uname = info.gname = "root"
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = link
                tar.addfile(info)

        for directory in ("bin", "etc", "tmp", "proc", "sys", "dev"):
            add(directory, tarfile.DIRTYPE, mode=0o1777 if directory == "tmp" else 0o755)
        add("bin/busybox", tarfile.REGTYPE, binary)
        for applet in APPLETS:
            add(f"bin/{applet}", tarfile.SYMTYPE, link="busybox", mode=0o777)
        add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0:root:/:/bin/sh\n", mode=0o644)
        add("etc/group", tarfile.REGTYPE, b"root:x:0:\n", mode=0o644)
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def runnable_config(
    *,
    entrypoint: Sequence[str] = (),
    cmd: Sequence[str] = FOREVER,
    labels: Mapping[str, str] | None = None,
    architecture: str = "amd64",
    variant: str | None = None,
) -> bytes:
    """An image config JSON for the busybox layer."""
    layer = busybox_layer()
    config: dict[str, Any] = {
        "Env": ["PATH=/bin"],
        "Cmd": list(cmd),
        "WorkingDir": "/",
    }
    if entrypoint:
        config["Entrypoint"] = list(entrypoint)
    if labels:
        config["Labels"] = dict(labels)
    document: dict[str, Any] = {"architecture": architecture, "os": "linux"}
    if variant:
        document["variant"] = variant
    document.update(
        {
            "created": "2024-01-01T00:00:00Z",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(gzip.decompress(layer))]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "kferry test busybox"}],
        }
    )
    return json.dumps(document, indent=2, sort_keys=True).encode()


def _manifest(config: Blob, layer: Blob, media: Media) -> bytes:
    return _serialize(
        {
            "schemaVersion": 2,
            "mediaType": _MEDIA[media]["manifest"],
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        }
    )


def push_runnable(
    registry: Registry,
    repo: str,
    *,
    tag: str | None = None,
    media: Media = "oci",
    cmd: Sequence[str] = FOREVER,
    entrypoint: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    platform: tuple[str, str | None] = ("amd64", None),
    client: httpx.Client | None = None,
) -> PushedImage:
    """Push a runnable busybox image to ``registry/repo`` (``tag=None``: by digest only)."""
    layer = Blob.of(busybox_layer(), _LAYER[media])
    architecture, variant = platform
    config = Blob.of(
        runnable_config(
            entrypoint=entrypoint,
            cmd=cmd,
            labels={"kferry.test/repo": repo, **(labels or {})},
            architecture=architecture,
            variant=variant,
        ),
        _MEDIA[media]["config"],
    )
    manifest_bytes = _manifest(config, layer, media)
    digest = sha256_digest(manifest_bytes)
    own = client is None
    c = client if client is not None else registry.client()
    try:
        push_blob(c, repo, layer.data)
        push_blob(c, repo, config.data)
        push_manifest(c, repo, tag or digest, manifest_bytes, _MEDIA[media]["manifest"])
    finally:
        if own:
            c.close()
    plat = {"architecture": architecture, "os": "linux"}
    if variant:
        plat["variant"] = variant
    return PushedImage(
        host=registry.host,
        repo=repo,
        tag=tag,
        digest=digest,
        manifest_bytes=manifest_bytes,
        media_type=_MEDIA[media]["manifest"],
        size=len(manifest_bytes),
        blobs=(config, layer),
        config=config,
        layers=(layer,),
        platform=plat,
    )


def push_runnable_index(
    registry: Registry,
    repo: str,
    *,
    tag: str | None = None,
    media: Media = "oci",
    cmd: Sequence[str] = FOREVER,
    platforms: Sequence[tuple[str, str | None]] = (("amd64", None), ("arm64", "v8")),
) -> PushedImage:
    """A multi-arch index (OCI index or Docker manifest list) of runnable images."""
    with registry.client() as c:
        children = [
            push_runnable(registry, repo, media=media, cmd=cmd, platform=p, client=c)
            for p in platforms
        ]
        return push_index(registry, repo, images=children, tag=tag, media=media, client=c)


@dataclass(frozen=True)
class Archive:
    """An OCI image layout tar for ``ctr images import``: ``name`` is the reference it is
    imported as."""

    path: Path
    name: str
    digest: str


def write_oci_archive(path: Path, name: str, *, cmd: Sequence[str] = FOREVER) -> Archive:
    """Write a runnable image as an OCI image layout tar (``oci-layout``, ``index.json``
    naming ``name`` in ``org.opencontainers.image.ref.name``, ``blobs/sha256/...``)."""
    layer = Blob.of(busybox_layer(), _LAYER["oci"])
    config = Blob.of(runnable_config(cmd=cmd), _MEDIA["oci"]["config"])
    manifest = _manifest(config, layer, "oci")
    digest = sha256_digest(manifest)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": _MEDIA["oci"]["manifest"],
                    "digest": digest,
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": name},
                }
            ],
        }
    ).encode()
    files = {
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "index.json": index,
        **{
            f"blobs/sha256/{d.removeprefix('sha256:')}": data
            for d, data in (
                (layer.digest, layer.data),
                (config.digest, config.data),
                (digest, manifest),
            )
        },
    }
    with tarfile.open(path, "w") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return Archive(path, name, digest)


__all__ = [
    "Archive",
    "RunnableError",
    "busybox_layer",
    "busybox_path",
    "push_program",
    "push_runnable",
    "push_runnable_index",
    "runnable_config",
    "write_oci_archive",
]
