"""The new layer: wheels installed for the image's Python, plus plain files, as one tar.gz.

Wheels are installed by pypa ``installer`` (the reference implementation of the wheel
install spec: RECORD, INSTALLER, ``.data`` directories, console-script launchers with the
image's interpreter in their shebang) into a staging directory that stands for the image's
root. The staging tree is then written as a tar that is the same bytes for the same inputs:
entries sorted, owner root, modes normalised (0755 directories and executables, 0644 files),
every timestamp ``SOURCE_DATE_EPOCH`` (0 when unset), gzip without name or time. Directories
the base already has keep the base's mode and owner (a layer's directory entry replaces them,
and ``/opt/conda`` owned by the notebook user must stay writable for ``pip install`` in the
running notebook).

A package the base already has at another version is replaced the way ``pip install
--upgrade`` would: its files (from its RECORD) and its ``.dist-info`` are deleted with OCI
whiteouts (``.wh.NAME``); at the same version it is left alone.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.sources import WheelFile

from kferry.errors import InputError, KferryError
from kferry.notebook.python import PythonInfo
from kferry.notebook.rootfs import Tree
from kferry.wheels.pip import Wheel

LAYER_MEDIA = {
    "oci": "application/vnd.oci.image.layer.v1.tar+gzip",
    "docker": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


@dataclass(frozen=True)
class AddFile:
    source: Path
    dest: str  # absolute path in the image

    @classmethod
    def parse(cls, spec: str) -> AddFile:
        src, sep, dest = spec.rpartition(":")
        if not sep or not src or not dest.startswith("/"):
            raise InputError(f"--add {spec}: give SRC:DEST with DEST an absolute path")
        path = Path(src)
        if not path.exists():
            raise InputError(f"--add {spec}: {src}: no such file or directory")
        return cls(path, posixpath.normpath(dest))


@dataclass
class Layer:
    path: Path
    digest: str  # of the gzip blob
    diff_id: str  # of the uncompressed tar
    size: int
    installed: list[tuple[str, str]] = field(default_factory=list)  # (name, version)
    replaced: list[tuple[str, str, str]] = field(default_factory=list)  # name, old, new
    kept: list[tuple[str, str]] = field(default_factory=list)  # already in the base
    files: int = 0


class _Hashing(io.RawIOBase):
    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


def _epoch() -> int:
    try:
        return max(0, int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    except ValueError:
        return 0


def install_wheels(wheels: Sequence[Wheel], python: PythonInfo, root: Path, layer: Layer) -> None:
    for w in wheels:
        have = python.installed.get(w.name)
        if have is not None and have.version == w.version:
            layer.kept.append((w.name, w.version))
            continue
        destination = SchemeDictionaryDestination(
            python.scheme(),
            interpreter=python.executable,
            script_kind="posix",
            bytecode_optimization_levels=(),
            destdir=str(root),
        )
        try:
            with WheelFile.open(w.path) as source:
                install(source, destination, {"INSTALLER": b"kferry\n"})
        except (InstallerError, FileExistsError, ValueError, OSError) as exc:
            raise KferryError(f"installing {w.path.name}: {exc}") from None
        if have is not None:
            layer.replaced.append((w.name, have.version, w.version))
        else:
            layer.installed.append((w.name, w.version))


def add_files(adds: Sequence[AddFile], root: Path) -> None:
    for a in adds:
        target = root / a.dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if a.source.is_dir():
            shutil.copytree(a.source, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(a.source, target)


def whiteouts(python: PythonInfo, layer: Layer, root: Path) -> list[str]:
    """Image paths to delete: what replaced packages had that the new ones do not."""
    gone: list[str] = []
    for name, _old, _new in layer.replaced:
        have = python.installed[name]
        for path in (*have.files, have.dist_info):
            if not (root / path.lstrip("/")).exists():
                gone.append(path)
    # a deleted directory covers what is under it
    gone = sorted(set(gone))
    return [p for p in gone if not any(p.startswith(g + "/") for g in gone)]


def write_layer(root: Path, tree: Tree, whiteouts: Sequence[str], out: Path, layer: Layer) -> None:
    """The staging tree (and whiteouts) as a deterministic tar.gz at ``out``."""
    epoch = _epoch()
    paths: dict[str, str] = {}  # image path -> kind (dir | file | link | whiteout)
    for dirpath, dirnames, filenames in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel = "/" if rel == "/." else rel
        if rel != "/":
            paths[rel] = "dir"
        for n in dirnames:
            p = Path(dirpath, n)
            if p.is_symlink():
                paths[posixpath.join(rel, n)] = "link"
        for n in filenames:
            p = Path(dirpath, n)
            paths[posixpath.join(rel, n)] = "link" if p.is_symlink() else "file"
    for w in whiteouts:
        parent, base = posixpath.split(w)
        paths[posixpath.join(parent, ".wh." + base)] = "whiteout"
        for anc in _ancestors(parent):
            paths.setdefault(anc, "dir")
    diff = hashlib.sha256()
    with open(out, "wb") as raw:
        hashing = _Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, compresslevel=6, mtime=0) as gz:
            diffing = _Hashing(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=diffing, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path in sorted(paths):
                    _add(tar, root, tree, path, paths[path], epoch)
                    layer.files += paths[path] == "file"
            diff = diffing.sha
    layer.path = out
    layer.digest = "sha256:" + hashing.sha.hexdigest()
    layer.diff_id = "sha256:" + diff.hexdigest()
    layer.size = hashing.size


def _ancestors(path: str) -> list[str]:
    out = []
    while path not in ("/", ""):
        out.append(path)
        path = posixpath.dirname(path)
    return out


def _add(tar: tarfile.TarFile, root: Path, tree: Tree, path: str, kind: str, epoch: int) -> None:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    local = root / path.lstrip("/")
    if kind == "dir":
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        base = tree.get(path)
        if base is not None and base.kind == "dir":
            info.mode, info.uid, info.gid = stat.S_IMODE(base.mode), base.uid, base.gid
        tar.addfile(info)
    elif kind == "whiteout":
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(b""))
    elif kind == "link":
        info.type = tarfile.SYMTYPE
        info.mode = 0o777
        info.linkname = os.readlink(local)
        tar.addfile(info)
    else:
        st = local.stat()
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        info.size = st.st_size
        with open(local, "rb") as f:
            tar.addfile(info, f)
