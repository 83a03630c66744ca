"""``kferry notebook build``: a base image plus one layer of Python packages, without Docker.

1. The base (from a registry, or from a bundle) is read through transfer's stores: its
   manifest (one platform of an index), its config, and its layers, streamed and verified, to
   learn the file tree (:mod:`kferry.notebook.rootfs`) and the Python in it
   (:mod:`kferry.notebook.python`).
2. pip resolves and downloads wheels for exactly that Python and platform
   (:mod:`kferry.wheels.pip`), from the index or, with ``--wheels``, from a wheelhouse only.
3. They are installed into one new layer (:mod:`kferry.notebook.layer`).
4. The new image is the base manifest with that layer appended: every base layer descriptor is
   kept as it was and every base blob is copied byte for byte (digests unchanged); the config
   is the base config with the new layer's ``diff_id`` appended to ``rootfs.diff_ids`` and one
   ``history`` entry for it. It is pushed to the registry (or written into a bundle), blobs
   first, manifest last, so a failed build never leaves a tag pointing at a half image.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from kferry.errors import InputError, KferryError
from kferry.name import InvalidReference, Reference, parse
from kferry.notebook.layer import (
    LAYER_MEDIA,
    AddFile,
    Layer,
    add_files,
    install_wheels,
    whiteouts,
    write_layer,
)
from kferry.notebook.python import PythonInfo, find_python
from kferry.notebook.rootfs import Tree, layer_members
from kferry.transfer.digest import verified
from kferry.transfer.layout.read import LayoutReader
from kferry.transfer.layout.write import LayoutWriter
from kferry.transfer.media import (
    DOCKER_MANIFEST,
    INDEX_TYPES,
    Descriptor,
    Manifest,
    parse_manifest,
    sha256_digest,
)
from kferry.transfer.registry import Registries
from kferry.transfer.stores import ImageSink, ImageSource, RegistryStore
from kferry.transfer.transport import Options
from kferry.wheels.house import LOCK_NAME, read_lock
from kferry.wheels.pip import Target, Wheel, download

DEFAULT_PLATFORM = "linux/amd64"


@dataclass
class BuildRequest:
    base: str
    to: str
    requirements: list[Path] = field(default_factory=list)
    wheels: Path | None = None
    adds: list[AddFile] = field(default_factory=list)
    base_bundle: Path | None = None
    out: Path | None = None
    platform: str | None = None


@dataclass
class BuildResult:
    base: Reference
    base_digest: str
    target: Reference
    digest: str
    platform: str
    python: PythonInfo
    target_tags: Target
    layer: Layer
    base_layers: list[str]
    output: str  # registry | bundle path
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base.canonical,
            "base_digest": self.base_digest,
            "image": self.target.canonical,
            "digest": self.digest,
            "output": self.output,
            "platform": self.platform,
            "python": {
                "executable": self.python.executable,
                "version": self.python.version,
                "site_packages": self.python.site_dir,
                "scripts": self.python.scripts_dir,
            },
            "wheel_tags": [*self.target_tags.platform_tags()[:1], self.target_tags.abi],
            "installed": [{"name": n, "version": v} for n, v in self.layer.installed],
            "replaced": [{"name": n, "from": o, "to": v} for n, o, v in self.layer.replaced],
            "already_in_base": [{"name": n, "version": v} for n, v in self.layer.kept],
            "layer": {
                "digest": self.layer.digest,
                "diff_id": self.layer.diff_id,
                "size": self.layer.size,
                "files": self.layer.files,
            },
            "base_layers": self.base_layers,
            "notes": self.notes,
        }


def _ref(text: str, what: str) -> Reference:
    try:
        return parse(text)
    except InvalidReference as exc:
        raise InputError(f"{what} {text}: {exc}") from None


@dataclass
class Base:
    ref: Reference
    top_digest: str
    manifest: Manifest
    doc: dict[str, Any]
    config_raw: bytes
    config: dict[str, Any]
    platform: str


def _blob_bytes(source: ImageSource, ref: Reference, desc: Descriptor, limit: int) -> bytes:
    if desc.size > limit:
        raise KferryError(f"{ref.canonical}: config blob of {desc.size} bytes is too large")
    with source.open_blob(ref, desc) as chunks:
        return b"".join(verified(chunks, desc.digest, desc.size, ref.canonical))


def _platform_of(config: dict[str, Any]) -> str:
    parts = [str(config.get("os") or "linux"), str(config.get("architecture") or "amd64")]
    if config.get("variant"):
        parts.append(str(config["variant"]))
    return "/".join(parts)


def read_base(source: ImageSource, ref: Reference, platform: str | None) -> Base:
    top = source.get_manifest(ref)
    manifest = top
    if top.media_type in INDEX_TYPES:
        images = [c for c in top.children if c.platform and c.platform != "unknown/unknown"]
        only = images[0].platform if len(images) == 1 else None
        wanted = platform or only or DEFAULT_PLATFORM
        match = [
            c for c in images if c.platform == wanted or (c.platform or "").startswith(wanted + "/")
        ]
        if not match:
            have = ", ".join(sorted({c.platform or "?" for c in images}))
            raise KferryError(f"{ref.canonical}: no {wanted} image in this index (has {have})")
        manifest = source.get_child(ref, match[0].digest)
    doc = json.loads(manifest.raw)
    config_desc = manifest.blobs[0]
    config_raw = _blob_bytes(source, ref, config_desc, 16 << 20)
    try:
        config = json.loads(config_raw)
    except ValueError:
        raise KferryError(f"{ref.canonical}: image config is not JSON") from None
    got = _platform_of(config)
    if platform and not (got == platform or got.startswith(platform + "/")):
        raise KferryError(f"{ref.canonical}: is {got}, not {platform}")
    return Base(ref, top.digest, manifest, doc, config_raw, config, got)


def scan(source: ImageSource, base: Base) -> Tree:
    tree = Tree()
    for desc in base.manifest.blobs[1:]:
        if desc.foreign:
            raise KferryError(
                f"{base.ref.canonical}: layer {desc.digest} is non-distributable (foreign): "
                "kferry cannot read it"
            )
        where = f"{base.ref.canonical} layer {desc.digest}"
        with source.open_blob(base.ref, desc) as chunks:
            try:
                checked = verified(chunks, desc.digest, desc.size, where)
                tree.apply(layer_members(checked, desc.media_type))
            except (tarfile.TarError, zlib.error, EOFError, zstandard.ZstdError, OSError) as exc:
                raise KferryError(f"{where}: not a readable layer: {exc}") from None
    return tree


def _wheels(req: BuildRequest, target: Target, tmp: Path, notes: list[str]) -> list[Wheel]:
    if req.requirements:
        return download(req.requirements, target, tmp / "wheels", find_links=req.wheels)
    if req.wheels is None:
        return []
    lock = read_lock(req.wheels / LOCK_NAME)
    if lock.target.python != target.python or lock.target.platform != target.platform:
        raise InputError(
            f"{req.wheels / LOCK_NAME}: the wheelhouse is for {lock.target.describe()}, the "
            f"base image has {target.describe()}"
        )
    if (lock.target.glibc or (0, 0)) > (target.glibc or (99, 99)):
        notes.append(
            f"the wheelhouse allows wheels for {lock.target.describe()}, newer than the "
            f"image's C library ({target.describe()}); pip checks each wheel's tags"
        )
    return download(
        [req.wheels / LOCK_NAME],
        target,
        tmp / "wheels",
        find_links=req.wheels,
        extra=["--require-hashes"],
    )


def new_config(base: Base, layer: Layer, comment: str) -> bytes:
    config = json.loads(base.config_raw)
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs.setdefault("diff_ids", []).append(layer.diff_id)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(config.get("history"), list):
        config["history"].append(
            {"created": now, "created_by": "kferry notebook build", "comment": comment}
        )
    config["created"] = now
    return json.dumps(config, separators=(",", ":")).encode()


def new_manifest(base: Base, config_raw: bytes, layer: Layer) -> Manifest:
    doc = json.loads(base.manifest.raw)
    kind = "docker" if base.manifest.media_type == DOCKER_MANIFEST else "oci"
    doc["config"]["digest"] = sha256_digest(config_raw)
    doc["config"]["size"] = len(config_raw)
    doc.setdefault("layers", []).append(
        {"mediaType": LAYER_MEDIA[kind], "digest": layer.digest, "size": layer.size}
    )
    raw = json.dumps(doc, indent=2).encode()
    return parse_manifest(raw, base.manifest.media_type, "new manifest")


@contextlib.contextmanager
def _bytes_opener(data: bytes) -> Iterator[Iterator[bytes]]:
    yield iter([data])


@contextlib.contextmanager
def _file_opener(path: Path) -> Iterator[Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    yield chunks()


def push(
    source: ImageSource,
    sink: ImageSink,
    base: Base,
    target: Reference,
    config_raw: bytes,
    layer: Layer,
    manifest: Manifest,
    jobs: int,
) -> None:
    def nothing(n: int) -> None:
        return None

    same_registry = (
        isinstance(source, RegistryStore)
        and sink is source
        and base.ref.domain == target.domain
        and base.ref.path != target.path
    )

    def copy_base(desc: Descriptor) -> None:
        if same_registry and _mounted(source, base.ref, target, desc):
            return
        sink.put_blob(target, desc, lambda: source.open_blob(base.ref, desc), nothing)

    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="kferry-nb") as pool:
        for f in [pool.submit(copy_base, d) for d in base.manifest.blobs[1:] if not d.foreign]:
            f.result()
    config_desc = Descriptor(
        base.manifest.blobs[0].media_type, sha256_digest(config_raw), len(config_raw)
    )
    sink.put_blob(target, config_desc, lambda: _bytes_opener(config_raw), nothing)
    layer_desc = manifest.blobs[-1]
    sink.put_blob(target, layer_desc, lambda: _file_opener(layer.path), nothing)
    sink.put_manifest(target, target.tag or target.digest or "latest", manifest, top=True)


def _mounted(store: ImageSource, base: Reference, target: Reference, desc: Descriptor) -> bool:
    """The base is on the target's registry (the mirrored base in Harbor): a base layer is
    mounted from the base's repository instead of being sent again; True when it is there."""
    assert isinstance(store, RegistryStore)
    reg = store.registries.get(target.domain)
    if reg.blob_exists(target.path, desc.digest):
        return True
    return reg.mount_blob(target.path, desc.digest, base.path) is None


def _quiet(message: str) -> None:
    return None


def build(
    req: BuildRequest,
    options: Options,
    jobs: int = 4,
    step: Callable[[str], None] = _quiet,
) -> BuildResult:
    """Build and push (or write); ``step`` hears what is happening, for people watching."""
    base_ref = _ref(req.base, "BASE")
    target = _ref(req.to, "--to")
    if target.digest:
        raise InputError(f"--to {req.to}: give a tag, not a digest (the digest is the result)")
    if not req.requirements and req.wheels is None and not req.adds:
        raise InputError("nothing to add: give --requirements FILE, --wheels DIR or --add SRC:DEST")
    for r in req.requirements:
        if not r.is_file():
            raise InputError(f"--requirements {r}: no such file")
    if req.wheels is not None and not req.wheels.is_dir():
        raise InputError(f"--wheels {req.wheels}: no such directory")
    registries = Registries(options)
    reader: LayoutReader | None = None
    try:
        source: ImageSource
        if req.base_bundle is not None:
            reader = LayoutReader(req.base_bundle)
            source = reader
        else:
            source = RegistryStore(registries)
        base = read_base(source, base_ref, req.platform)
        layers = base.manifest.blobs[1:]
        size = sum(d.size for d in layers)
        step(f"reading {len(layers)} base layers ({size / 1e6:.1f} MB) to find its Python")
        tree = scan(source, base)
        where = base_ref.canonical
        python = find_python(tree, base.config, where)
        notes = list(python.notes)
        glibc = tree.glibc()
        musl = glibc is None and tree.musl()
        if glibc is None and not musl:
            notes.append("could not read the image's C library version; assuming glibc 2.17")
            glibc = (2, 17)
        tags = Target(python.version, base.platform, None if musl else glibc, musl)
        with tempfile.TemporaryDirectory(prefix="kferry-notebook-") as tmpname:
            tmp = Path(tmpname)
            if req.requirements or req.wheels:
                step(f"resolving wheels for {tags.describe()} with pip")
            wheels = _wheels(req, tags, tmp, notes)
            root = tmp / "root"
            root.mkdir()
            layer = Layer(tmp / "layer.tar.gz", "", "", 0)
            install_wheels(wheels, python, root, layer)
            add_files(req.adds, root)
            gone = whiteouts(python, layer, root)
            write_layer(root, tree, gone, tmp / "layer.tar.gz", layer)
            pins = [f"{n}=={v}" for n, v in layer.installed] + [
                f"{n}=={v} (was {o})" for n, o, v in layer.replaced
            ]
            comment = "; ".join(
                x
                for x in [
                    f"pip: {', '.join(pins)}" if pins else "",
                    f"files: {', '.join(a.dest for a in req.adds)}" if req.adds else "",
                ]
                if x
            )
            config_raw = new_config(base, layer, comment or "no changes")
            manifest = new_manifest(base, config_raw, layer)
            sink: ImageSink
            writer: LayoutWriter | None = None
            if req.out is not None:
                writer = LayoutWriter(req.out)
                sink = writer
            else:
                sink = source if isinstance(source, RegistryStore) else RegistryStore(registries)
            step(f"writing {target.canonical} (new layer {layer.size / 1e6:.1f} MB)")
            push(source, sink, base, target, config_raw, layer, manifest, jobs)
            output = "registry"
            if writer is not None:
                output = str(writer.finish())
        return BuildResult(
            base_ref,
            base.top_digest,
            target,
            manifest.digest,
            base.platform,
            python,
            tags,
            layer,
            [d.digest for d in base.manifest.blobs[1:]],
            output,
            notes,
        )
    finally:
        if reader is not None:
            reader.close()
        registries.close()


__all__ = ["BuildRequest", "BuildResult", "build"]
