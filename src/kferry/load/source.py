"""Reading inputs: files (optionally gzip-compressed), ``-`` for stdin, kustomize directories.

Every input is read in pieces up to ``MAX_INPUT_BYTES`` (after gzip decompression, which is
streamed with ``max_length`` so a 3 MB gzip bomb never becomes 6 GB in memory); binary data
(a NUL byte in the first 8 KiB, as ``/dev/zero`` gives) is refused as soon as it is seen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kferry.errors import InputError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
YAML_SUFFIXES = (".yaml", ".yml", ".yaml.gz", ".yml.gz", ".json")
BINARY_PROBE = 8192
# A whole rendered Kubeflow release is about 12 MB; nothing kferry reads comes near this.
MAX_INPUT_BYTES = 512 << 20
READ_PIECE = 1 << 20


@dataclass(frozen=True, slots=True)
class Source:
    """One input text; ``name`` is what messages call it (a path, ``<stdin>``, a command)."""

    name: str
    text: str


def _too_large(name: str) -> InputError:
    return InputError(
        f"{name}: more than {MAX_INPUT_BYTES >> 20} MiB of text; refused (a rendered "
        "installation is a few MB: is this the right input?)"
    )


def _check_binary(name: str, data: bytes) -> None:
    nul = data.find(b"\x00", 0, BINARY_PROBE)
    if nul != -1:
        raise InputError(f"{name}: binary data (NUL byte at offset {nul}); expected YAML text")


def _gunzip(name: str, data: bytes) -> bytes:
    """All gzip members of ``data``, at most ``MAX_INPUT_BYTES`` of output."""
    out = bytearray()
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(wbits=31)
            chunk = d.decompress(rest, READ_PIECE)
            while True:
                out += chunk
                if len(out) > MAX_INPUT_BYTES:
                    raise _too_large(name)
                if len(out) <= BINARY_PROBE * 2:
                    _check_binary(name, bytes(out))
                if d.eof or not (d.unconsumed_tail or chunk):
                    break
                chunk = d.decompress(d.unconsumed_tail, READ_PIECE)
            if not d.eof:
                raise InputError(f"{name}: damaged gzip data (truncated)")
            rest = d.unused_data.lstrip(b"\x00")
            if rest and not rest.startswith(b"\x1f\x8b"):
                break  # trailing garbage after the last member: what gzip(1) ignores too
    except zlib.error as exc:
        raise InputError(f"{name}: damaged gzip data ({exc})") from None
    return bytes(out)


def read_capped(name: str, stream: BinaryIO) -> bytes:
    """Read ``stream`` whole, at most ``MAX_INPUT_BYTES``; binary data refused at once."""
    buf = bytearray()
    while piece := stream.read(READ_PIECE):
        if not buf and not piece.startswith(b"\x1f\x8b"):
            _check_binary(name, piece)
        buf += piece
        if len(buf) > MAX_INPUT_BYTES:
            raise _too_large(name)
    return bytes(buf)


def decode(name: str, data: bytes) -> str:
    """Bytes -> text, refusing binary data with a message that says what was expected."""
    if data.startswith(b"\x1f\x8b"):
        data = _gunzip(name, data)
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
        with open(path, "rb") as f:
            data = read_capped(str(path), f)
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
            if stdin is not None:
                data = b"".join(stdin)
                if len(data) > MAX_INPUT_BYTES:
                    raise _too_large("<stdin>")
            else:
                data = read_capped("<stdin>", sys.stdin.buffer)
            sources.append(Source("<stdin>", decode("<stdin>", data)))
            continue
        path = Path(os.path.expanduser(raw))
        if path.is_dir():
            sources.extend(_read_directory(path))
        else:
            sources.append(_read_file(path))
    return sources
