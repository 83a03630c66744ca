"""Wheels for another Python and platform, resolved by pip's own resolver.

kferry never resolves dependencies itself: it runs ``python -m pip download`` with
``--only-binary=:all: --platform ... --python-version ... --implementation cp --abi ...``
(pip's documented way to fetch for an interpreter other than the running one), so the set is
whatever pip would install there, conflict-free, and a requirement with no wheel for that
Python and platform is pip's error, reported with the requirement's name. pip reads its usual
configuration (``PIP_INDEX_URL``, ``pip.conf``), so a site's own package mirror works.

The platform tags: ``manylinux_2_N_ARCH`` for every glibc from the target's down to 2.5 (and
the legacy ``manylinux1/2010/2014`` aliases), or ``musllinux_1_N_ARCH`` for musl; pure-Python
wheels (``none-any``) always match.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from kferry.errors import InputError, KferryError

ARCHES = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "386": "i686",
    "arm/v7": "armv7l",
}
LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
DEFAULT_GLIBC = (2, 28)


@dataclass(frozen=True)
class Target:
    """The Python and platform wheels are for."""

    python: str  # "3.11"
    platform: str = "linux/amd64"
    glibc: tuple[int, int] | None = DEFAULT_GLIBC
    musl: bool = False

    @classmethod
    def parse(
        cls, python: str, platform: str, glibc: str | None = None, musl: bool = False
    ) -> Target:
        if not re.fullmatch(r"3\.\d+", python):
            raise InputError(f"--python {python}: give MAJOR.MINOR, e.g. 3.11")
        if arch_of(platform) is None:
            raise InputError(
                f"--platform {platform}: one of {', '.join('linux/' + a for a in ARCHES)}"
            )
        parsed = DEFAULT_GLIBC
        if glibc:
            m = re.fullmatch(r"2\.(\d+)", glibc)
            if not m:
                raise InputError(f"--glibc {glibc}: give the C library version, e.g. 2.28")
            parsed = (2, int(m.group(1)))
        return cls(python, platform, None if musl else parsed, musl)

    @property
    def arch(self) -> str:
        arch = arch_of(self.platform)
        assert arch is not None
        return arch

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def platform_tags(self) -> list[str]:
        arch = self.arch
        if self.musl:
            return [f"musllinux_1_{n}_{arch}" for n in (2, 1)]
        major, minor = self.glibc or DEFAULT_GLIBC
        tags = []
        for n in range(minor, 4, -1):
            tags.append(f"manylinux_{major}_{n}_{arch}")
            legacy = LEGACY.get((major, n))
            if legacy:
                tags.append(f"{legacy}_{arch}")
        return tags

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--implementation", "cp"]
        args += ["--python-version", self.python]
        for abi in (self.abi, "abi3", "none"):
            args += ["--abi", abi]
        for tag in self.platform_tags():
            args += ["--platform", tag]
        return args

    def describe(self) -> str:
        libc = "musl" if self.musl else "glibc {}.{}".format(*(self.glibc or DEFAULT_GLIBC))
        return f"Python {self.python} on {self.platform} ({libc})"

    def header(self) -> str:
        libc = "musl" if self.musl else "glibc={}.{}".format(*(self.glibc or DEFAULT_GLIBC))
        return f"# kferry wheels: python={self.python} platform={self.platform} {libc}"


def arch_of(platform: str) -> str | None:
    os_, _, arch = platform.partition("/")
    return ARCHES.get(arch) if os_ == "linux" else None


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # normalized
    version: str
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Wheel:
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename as exc:
            raise InputError(f"{path}: not a wheel file name: {exc}") from None
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return cls(path, str(name), str(version), h.hexdigest())


def pip_command() -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _pip_error(stderr: str, target: Target) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln.removeprefix("ERROR: ") for ln in lines if ln.startswith("ERROR:")]
    for e in errors:
        m = re.match(r"No matching distribution found for (.+)", e)
        if m:
            return (
                f"no wheel of {m.group(1)} for {target.describe()}: pip found none that "
                f"installs there (tags {target.abi}, {target.platform_tags()[0]} and older); "
                "pin another version, or build the wheel on the connected side and give --wheels"
            )
    if any("ResolutionImpossible" in ln for ln in lines):
        conflict = [ln for ln in lines if "requested" in ln or "depends on" in ln]
        return "the requirements conflict: " + "; ".join(conflict[:6] or errors[:3])
    return "; ".join(errors[:4] or lines[-3:]) or "pip failed"


def download(
    requirements: list[Path],
    target: Target,
    dest: Path,
    *,
    find_links: Path | None = None,
    extra: list[str] | None = None,
) -> list[Wheel]:
    """Resolve and download wheels into ``dest`` (offline from ``find_links`` if given)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [*pip_command(), "download", "--progress-bar", "off", "--dest", str(dest)]
    cmd += target.pip_args()
    if find_links is not None:
        cmd += ["--no-index", "--find-links", str(find_links)]
    for r in requirements:
        cmd += ["--requirement", str(r)]
    cmd += extra or []
    env = dict(os.environ, PIP_NO_COLOR="1")
    proc = subprocess.run(
        cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, check=False
    )
    if proc.returncode != 0:
        raise KferryError(_pip_error(proc.stderr, target))
    wheels = sorted((Wheel.of(p) for p in dest.glob("*.whl")), key=lambda w: w.name)
    names: dict[str, Wheel] = {}
    for w in wheels:
        if w.name in names and names[w.name].version != w.version:
            raise KferryError(
                f"{dest}: two versions of {w.name} ({names[w.name].version}, {w.version}); "
                "use an empty output directory"
            )
        names[w.name] = w
    return wheels


def dry_run(requirements: Path, target: Target, wheelhouse: Path) -> None:
    """pip installs the lock from the wheelhouse alone (no index), hashes checked: it is
    complete and conflict-free for the target. Nothing is written."""
    cmd = [*pip_command(), "install", "--dry-run", "--ignore-installed", "--quiet"]
    cmd += ["--no-index", "--find-links", str(wheelhouse), "--require-hashes"]
    cmd += ["--target", str(wheelhouse / ".kferry-dry-run")]
    cmd += [*target.pip_args(), "--requirement", str(requirements)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if proc.returncode != 0:
        raise KferryError(
            f"{wheelhouse}: pip cannot install the lock: {_pip_error(proc.stderr, target)}"
        )
