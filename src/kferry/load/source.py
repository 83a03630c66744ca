"""Reading inputs: files (optionally gzip-compressed), ``-`` for stdin, kustomize directories."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kferry.errors import InputError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
YAML_SUFFIXES = (".yaml", ".yml", ".yaml.gz", ".yml.gz", ".json")
BINARY_PROBE = 8192


@dataclass(frozen=True, slots=True)
class Source:
    """One input text; ``name`` is what messages call it (a path, ``<stdin>``, a command)."""

    name: str
    text: str


def decode(name: str, data: bytes) -> str:
    """Bytes -> text, refusing binary data with a message that says what was expected."""
    if data.startswith(b"\x1f\x8b"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(f"{name}: damaged gzip data ({exc})") from None
    nul = data.find(b"\x00", 0, BINARY_PROBE)
    if nul != -1:
        raise InputError(f"{name}: binary data (NUL byte at offset {nul}); expected YAML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{name}: line {line}: not UTF-8 text (invalid byte at offset {exc.start}); "
            "expected YAML text"
        ) from None


def _kustomize_command(directory: Path) -> list[str]:
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build", str(directory)]
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize", str(directory)]
    raise InputError(
        f"{directory}: is a kustomize directory, but neither 'kustomize' nor 'kubectl' is on "
        "PATH; install one, or render it yourself and pass the YAML file"
    )


def _render_kustomization(directory: Path) -> Source:
    cmd = _kustomize_command(directory)
    name = f"{Path(cmd[0]).name} {cmd[1]} {directory}"
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)
    except OSError as exc:
        raise InputError(f"{directory}: cannot run {name}: {exc}") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        last = detail[-1] if detail else f"exit code {proc.returncode}"
        raise InputError(f"{directory}: {name} failed: {last}")
    return Source(name, decode(name, proc.stdout))


def _read_file(path: Path) -> Source:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or directory") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return Source(str(path), decode(str(path), data))


def _read_directory(directory: Path) -> list[Source]:
    if any((directory / name).is_file() for name in KUSTOMIZATION_FILES):
        return [_render_kustomization(directory)]
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name.endswith(YAML_SUFFIXES)
    )
    if not files:
        raise InputError(f"{directory}: no kustomization and no YAML files in this directory")
    return [_read_file(p) for p in files]


def read_sources(paths: Sequence[str], stdin: Iterable[bytes] | None = None) -> list[Source]:
    """Read every path (``-`` = stdin) into sources, in the order given."""
    sources: list[Source] = []
    for raw in paths:
        if raw == "-":
            data = b"".join(stdin) if stdin is not None else sys.stdin.buffer.read()
            sources.append(Source("<stdin>", decode("<stdin>", data)))
            continue
        path = Path(os.path.expanduser(raw))
        if path.is_dir():
            sources.extend(_read_directory(path))
        else:
            sources.append(_read_file(path))
    return sources
