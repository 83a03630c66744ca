"""The Python inside an image: which interpreter, which version, where packages go.

Read from the image config (``Env``: ``PATH`` says which ``python3`` a shell in the container
runs, ``PYTHON_VERSION`` is cross-checked) and from its files (the merged layers): the
interpreter's real name (``python3.11``) gives the version, its prefix gives the library
directory. Packages go where ``pip install`` in that image would put them:

* ``PREFIX/lib/pythonX.Y/site-packages`` when it exists (conda, the Jupyter images, the
  python.org builds in ``/usr/local``);
* ``/usr/local/lib/pythonX.Y/dist-packages`` (scripts in ``/usr/local/bin``) for Debian's and
  Ubuntu's own ``/usr/bin/python3`` (its ``site.py`` names ``dist-packages``), whose ``site``
  module puts that directory first on ``sys.path`` and ``pip`` installs there;
* otherwise ``PREFIX/lib/pythonX.Y/site-packages``, created.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kferry.errors import KferryError
from kferry.notebook.rootfs import Tree

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_VERSIONED = re.compile(r"^python(\d)\.(\d+)$")
_DIST_INFO = re.compile(r"^(?P<name>[^/]+?)-(?P<version>[^-/]+)\.dist-info$")


@dataclass(frozen=True)
class Installed:
    """A distribution the base image already has in the target directory."""

    name: str  # normalized
    version: str
    dist_info: str
    files: tuple[str, ...]  # absolute paths from its RECORD


@dataclass
class PythonInfo:
    executable: str  # absolute path in the image, for script shebangs
    version: str  # "3.11"
    prefix: str
    site_dir: str
    scripts_dir: str
    data_dir: str
    installed: dict[str, Installed] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def abi(self) -> str:
        return "cp" + self.version.replace(".", "")

    def scheme(self) -> dict[str, str]:
        return {
            "purelib": self.site_dir,
            "platlib": self.site_dir,
            "scripts": self.scripts_dir,
            "data": self.data_dir,
            "headers": posixpath.join(self.data_dir, "include", f"python{self.version}"),
        }


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def env_of(config: Mapping[str, Any]) -> dict[str, str]:
    inner = config.get("config")
    env = inner.get("Env") if isinstance(inner, dict) else None
    out: dict[str, str] = {}
    for item in env if isinstance(env, list) else []:
        key, sep, value = str(item).partition("=")
        if sep:
            out[key] = value
    return out


def find_python(tree: Tree, config: Mapping[str, Any], where: str) -> PythonInfo:
    env = env_of(config)
    path_dirs = [d for d in (env.get("PATH") or DEFAULT_PATH).split(":") if d.startswith("/")]
    for d in path_dirs:
        for name in ("python3", "python"):
            found = _interpreter(tree, posixpath.join(d, name))
            if found is not None:
                return _describe(tree, found, env, where)
    raise KferryError(
        f"{where}: no python3 on the image's PATH ({':'.join(path_dirs)}): "
        "choose a base image with Python in it"
    )


def _interpreter(tree: Tree, path: str) -> tuple[str, str] | None:
    """(real path, "X.Y") of the interpreter ``path`` names, if it is one."""
    real = tree.resolve(path)
    if real is None:
        return None
    entry = tree.get(real)
    if entry is None or entry.kind not in ("file", "hardlink"):
        return None
    m = _VERSIONED.match(posixpath.basename(real))
    if m:
        return real, f"{m.group(1)}.{m.group(2)}"
    # an unversioned binary: its versioned sibling names the version
    directory = posixpath.dirname(real)
    for sibling in sorted(tree.children(directory)):
        m = _VERSIONED.match(posixpath.basename(sibling))
        if m and tree.resolve(sibling) is not None:
            return real, f"{m.group(1)}.{m.group(2)}"
    return None


def _describe(tree: Tree, found: tuple[str, str], env: dict[str, str], where: str) -> PythonInfo:
    real, version = found
    prefix = posixpath.dirname(posixpath.dirname(real)) or "/"
    stdlib = posixpath.join(prefix, "lib", f"python{version}")
    if tree.resolve(stdlib) is None:
        raise KferryError(
            f"{where}: {real} has no standard library at {stdlib}: not a Python kferry can "
            "install into"
        )
    site = real_path(tree, posixpath.join(stdlib, "site-packages"))
    site_py = tree.resolve(posixpath.join(stdlib, "site.py"))
    debian = b"dist-packages" in tree.captured.get(site_py or "", b"") or (
        prefix == "/usr" and tree.resolve("/usr/lib/python3/dist-packages") is not None
    )
    if tree.resolve(site) is not None or not debian:
        scripts = real_path(tree, posixpath.join(prefix, "bin"))
        info = PythonInfo(real, version, prefix, site, scripts, real_path(tree, prefix))
    else:
        local = real_path(tree, f"/usr/local/lib/python{version}/dist-packages")
        info = PythonInfo(
            real,
            version,
            prefix,
            local,
            real_path(tree, "/usr/local/bin"),
            real_path(tree, "/usr/local"),
        )
    declared = env.get("PYTHON_VERSION", "")
    if declared and not (declared == version or declared.startswith(version + ".")):
        info.notes.append(
            f"the image says PYTHON_VERSION={declared} but {real} is Python {version}; "
            f"installing for {version}"
        )
    info.installed = _installed(tree, info.site_dir)
    return info


def real_path(tree: Tree, path: str) -> str:
    """``path`` with the symlinks of its longest existing ancestor resolved: a layer must
    write into real directories (a tar entry over a symlink would replace it)."""
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts), 0, -1):
        head = "/" + "/".join(parts[:i])
        real = tree.resolve(head)
        if real is not None:
            return posixpath.join(real, *parts[i:]) if parts[i:] else real
    return path


def _installed(tree: Tree, site_dir: str) -> dict[str, Installed]:
    real = tree.resolve(site_dir)
    if real is None:
        return {}
    out: dict[str, Installed] = {}
    for child in tree.children(real):
        m = _DIST_INFO.match(posixpath.basename(child))
        if not m:
            continue
        record = tree.captured.get(posixpath.join(child, "RECORD"), b"")
        files = []
        for line in record.decode("utf-8", "replace").splitlines():
            rel = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
            if rel:
                files.append(posixpath.normpath(posixpath.join(site_dir, rel.strip('"'))))
        name = normalize(m.group("name"))
        out[name] = Installed(name, m.group("version"), child, tuple(files))
    return out
