"""A wheelhouse to carry across the air gap: the wheels, and ``requirements.lock`` with hashes.

``requirements.lock`` is a pip requirements file (``name==version --hash=sha256:...``, one
per wheel), so the far side installs it with ``pip install --no-index --find-links DIR
--require-hashes -r DIR/requirements.lock``. Its first line records the target
(``# kferry wheels: python=3.11 platform=linux/amd64 glibc=2.28``) so that ``wheels check``
and ``notebook build --wheels`` know what it is for.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from kferry.atomic import atomic_write
from kferry.errors import InputError, KferryError
from kferry.wheels.pip import Target, Wheel, download, dry_run

LOCK_NAME = "requirements.lock"
_HEADER = re.compile(
    r"^# kferry wheels: python=(?P<python>\S+) platform=(?P<platform>\S+) "
    r"(?:glibc=(?P<glibc>\S+)|(?P<musl>musl))\s*$"
)
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:(?P<hex>[0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]


@dataclass
class Lock:
    target: Target
    pins: list[Pin]


def lock_text(target: Target, wheels: list[Wheel], sources: list[str]) -> str:
    lines = [target.header(), f"# resolved by pip from: {', '.join(sources)}"]
    for w in sorted(wheels, key=lambda w: w.name):
        lines.append(f"{w.name}=={w.version} \\")
        lines.append(f"    --hash=sha256:{w.sha256}")
    return "\n".join(lines) + "\n"


def read_lock(path: Path) -> Lock:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such file (a wheelhouse made by kferry wheels save has one)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    lines = text.splitlines()
    m = _HEADER.match(lines[0]) if lines else None
    if m is None:
        raise InputError(f"{path}:1: not a kferry lock (no '# kferry wheels: ...' first line)")
    target = Target.parse(
        m.group("python"), m.group("platform"), m.group("glibc"), bool(m.group("musl"))
    )
    pins: list[Pin] = []
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for i, line in enumerate(lines, 1):
        if not buf:
            start = i
        stripped = line.split("#", 1)[0] if not line.lstrip().startswith("--hash") else line
        if stripped.rstrip().endswith("\\"):
            buf += stripped.rstrip()[:-1] + " "
            continue
        buf += stripped
        if buf.strip():
            logical.append((start, buf.strip()))
        buf = ""
    for lineno, entry in logical:
        pin = _PIN.match(entry)
        if pin is None:
            raise InputError(f"{path}:{lineno}: not 'name==version --hash=sha256:...'")
        hashes = tuple(h.group("hex") for h in _HASH.finditer(entry))
        if not hashes:
            raise InputError(f"{path}:{lineno}: {pin.group('name')} has no --hash")
        pins.append(Pin(str(canonicalize_name(pin.group("name"))), pin.group("version"), hashes))
    return Lock(target, pins)


@dataclass
class SaveResult:
    out: Path
    lock: Path
    target: Target
    wheels: list[Wheel]
    stale: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "wheelhouse": str(self.out),
            "lock": str(self.lock),
            "python": self.target.python,
            "platform": self.target.platform,
            "wheels": [
                {"name": w.name, "version": w.version, "file": w.path.name, "sha256": w.sha256}
                for w in self.wheels
            ],
            "not_in_lock": self.stale,
        }


def save(requirements: list[Path], target: Target, out: Path) -> SaveResult:
    """Resolve and download into ``out``; write the lock last (atomically)."""
    for r in requirements:
        if not r.is_file():
            raise InputError(f"--requirements {r}: no such file")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".kferry-wheels-", dir=out) as tmp:
        fetched = download(requirements, target, Path(tmp))
        wheels = []
        for w in fetched:
            final = out / w.path.name
            shutil.move(str(w.path), final)
            wheels.append(Wheel(final, w.name, w.version, w.sha256))
    lock = out / LOCK_NAME
    atomic_write(lock, lock_text(target, wheels, [str(r) for r in requirements]).encode())
    _umask_mode(lock)
    kept = {w.path.name for w in wheels}
    stale = sorted(p.name for p in out.glob("*.whl") if p.name not in kept)
    return SaveResult(out, lock, target, wheels, stale)


def _umask_mode(path: Path) -> None:
    """The lock is an ordinary output: readable as the user's umask allows, like the wheels."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


@dataclass
class CheckResult:
    wheelhouse: Path
    target: Target
    pins: int
    problems: list[str] = field(default_factory=list)
    unlocked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "wheelhouse": str(self.wheelhouse),
            "python": self.target.python,
            "platform": self.target.platform,
            "wheels": self.pins,
            "ok": self.ok,
            "problems": self.problems,
            "not_in_lock": self.unlocked,
        }


def check(wheelhouse: Path) -> CheckResult:
    """Every locked wheel present with its hash, and pip installs the lock from here alone."""
    if not wheelhouse.is_dir():
        raise InputError(f"{wheelhouse}: no such directory")
    lock = read_lock(wheelhouse / LOCK_NAME)
    result = CheckResult(wheelhouse, lock.target, len(lock.pins))
    files = {}
    for p in sorted(wheelhouse.glob("*.whl")):
        w = Wheel.of(p)
        files[(w.name, w.version)] = w
    locked = set()
    for pin in lock.pins:
        found = files.get((pin.name, pin.version))
        locked.add((pin.name, pin.version))
        if found is None:
            result.problems.append(f"{pin.name}=={pin.version}: no wheel in {wheelhouse}")
        elif found.sha256 not in pin.hashes:
            result.problems.append(
                f"{found.path.name}: sha256 {w.sha256[:16]}... is not the locked hash (damaged "
                "or replaced)"
            )
    result.unlocked = sorted(w.path.name for k, w in files.items() if k not in locked)
    if not result.problems:
        try:
            dry_run(wheelhouse / LOCK_NAME, lock.target, wheelhouse)
        except KferryError as exc:  # pip's verdict is a finding, not a crash
            result.problems.append(str(exc))
    return result
