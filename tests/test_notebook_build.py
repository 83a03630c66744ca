"""``kferry notebook build`` and ``kferry wheels``: real Python base, real wheels, real registries.

The base image is CPython 3.11 unpacked from Debian 12's own packages by
``scripts/python-rootfs`` (cached), in two layers (C libraries, then Python), pushed to a
loopback docker-registry. The builds fetch one compiled wheel (markupsafe) and one
pure-Python wheel with a console script (pycodestyle) from the package index, push to a TLS +
htpasswd registry, and skopeo reads back what the registry serves. Runnability is checked by
unpacking the result's layers (whiteouts applied) into a temporary root and running its
``python3`` there with ``chroot``; the pushed image running on the real node (kubelet +
containerd) is :mod:`tests.test_notebook_node`, which reuses the helpers here.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from kferry.notebook.python import find_python
from kferry.notebook.rootfs import Entry, Tree
from kferry.wheels.house import read_lock
from kferry.wheels.pip import Target
from tests.conftest import ROOT, run_kferry
from tests.support.images import (
    PushedImage,
    fetch_blob,
    fetch_manifest,
    push_image,
    push_index,
)
from tests.support.registry import Registry
from tests.support.skopeo import skopeo_inspect_raw

REQUIREMENTS = "markupsafe==3.0.2\npycodestyle==2.12.1\n"
IMPORT_CHECK = (
    "import importlib.metadata as m, markupsafe, pycodestyle; "
    "print('markupsafe', m.version('markupsafe'), markupsafe.escape('<a>')); "
    "print('pycodestyle', m.version('pycodestyle'))"
)


# --------------------------------------------------------------------------------------------
# The base image


@cache
def python_rootfs() -> Path:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "python-rootfs")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def _tar(root: Path, keep) -> bytes:
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = Path(dirpath, name)
                rel = path.relative_to(root).as_posix()
                if not keep(rel) and not (path.is_dir() and not path.is_symlink()):
                    continue
                info = tar.gettarinfo(str(path), rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def _is_python(rel: str) -> bool:
    return rel.startswith(("usr/lib/python3", "usr/bin/py")) or "libpython" in rel


@cache
def base_layers() -> tuple[bytes, bytes]:
    root = python_rootfs()
    return _tar(root, lambda r: not _is_python(r)), _tar(root, _is_python)


def push_base(registry: Registry, repo: str = "base/python", tag: str = "3.11") -> PushedImage:
    return push_image(
        registry, repo, tag=tag, layers=list(base_layers()), media="docker", seed="py"
    )


def registry_args(*registries: Registry) -> list[str]:
    args: list[str] = []
    for r in registries:
        if r.tls:
            args += ["--ca-file", str(r.ca_file)]
        else:
            args += ["--plain-http", r.host]
    return args


def kferry_build(base: str, to: Registry, target: str, *extra: str, source: Registry | None = None):
    args = ["notebook", "build", base, "--to", f"{to.host}/{target}", "--json", *extra]
    args += registry_args(*[r for r in (source, to) if r is not None])
    stdin = None
    if to.username:
        args += ["--username", to.username, "--password-stdin"]
        stdin = (to.password or "").encode() + b"\n"
    return run_kferry(*args, stdin=stdin)


def unpack(layers: list[bytes], dest: Path) -> Path:
    """Apply layers the way containerd does: whiteouts delete, then the entries land."""
    for data in layers:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            members = []
            for m in tar.getmembers():
                base = os.path.basename(m.name)
                parent = dest / os.path.dirname(m.name)
                if base == ".wh..wh..opq":
                    for child in parent.iterdir():
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
                elif base.startswith(".wh."):
                    gone = parent / base[4:]
                    if gone.is_dir() and not gone.is_symlink():
                        shutil.rmtree(gone)
                    elif gone.exists() or gone.is_symlink():
                        gone.unlink()
                else:
                    members.append(m)
            tar.extractall(dest, members=members, filter="fully_trusted")
    return dest


def chroot(root: Path, *argv: str) -> str:
    cmd = ["chroot", str(root), *argv]
    if os.geteuid() != 0:
        cmd = ["unshare", "--map-root-user", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def image_layers(registry: Registry, repo: str, ref: str):
    with registry.client() as c:
        manifest = json.loads(fetch_manifest(c, repo, ref).data)
        config = json.loads(fetch_blob(c, repo, manifest["config"]["digest"]))
        layers = [fetch_blob(c, repo, layer["digest"]) for layer in manifest["layers"]]
    return manifest, config, layers


# --------------------------------------------------------------------------------------------
# Without servers


def _tree(entries: dict[str, Entry]) -> Tree:
    return Tree(dict(entries))


D, F = Entry("dir", 0o755, 0, 0), Entry("file", 0o755, 0, 0)


def test_debian_python_installs_into_usr_local_dist_packages():
    tree = _tree(
        {
            "/usr": D,
            "/usr/bin": D,
            "/usr/bin/python3": Entry("symlink", 0o777, 0, 0, "python3.11"),
            "/usr/bin/python3.11": F,
            "/usr/lib": D,
            "/usr/lib/python3.11": D,
            "/usr/lib/python3": D,
            "/usr/lib/python3/dist-packages": D,
        }
    )
    py = find_python(tree, {"config": {"Env": ["PATH=/usr/local/bin:/usr/bin"]}}, "img")
    assert (py.executable, py.version) == ("/usr/bin/python3.11", "3.11")
    assert py.site_dir == "/usr/local/lib/python3.11/dist-packages"
    assert py.scripts_dir == "/usr/local/bin"


def test_conda_python_installs_into_its_site_packages_and_follows_path():
    tree = _tree(
        {
            "/usr/bin/python3": Entry("symlink", 0o777, 0, 0, "python3.9"),
            "/usr/bin/python3.9": F,
            "/usr/lib/python3.9": D,
            "/opt/conda/bin/python3": Entry("symlink", 0o777, 0, 0, "/opt/conda/bin/python3.12"),
            "/opt/conda/bin/python3.12": F,
            "/opt/conda/lib/python3.12": D,
            "/opt/conda/lib/python3.12/site-packages": Entry("dir", 0o775, 1000, 100),
            "/opt/conda/lib/python3.12/site-packages/MarkupSafe-2.1.5.dist-info": D,
        }
    )
    env = {"config": {"Env": ["PATH=/opt/conda/bin:/usr/bin", "PYTHON_VERSION=3.11.9"]}}
    py = find_python(tree, env, "img")
    assert py.executable == "/opt/conda/bin/python3.12"
    assert py.site_dir == "/opt/conda/lib/python3.12/site-packages"
    assert py.installed["markupsafe"].version == "2.1.5"
    assert any("PYTHON_VERSION=3.11.9" in n for n in py.notes)


def test_whiteouts_delete_lower_layers():
    tree = Tree()

    def member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        return info

    tree.apply([(member("a", tarfile.DIRTYPE), None), (member("a/x"), None), (member("b"), None)])
    tree.apply([(member("a/.wh..wh..opq"), None), (member("a/y"), None), (member(".wh.b"), None)])
    assert sorted(tree.entries) == ["/a", "/a/y"]


def test_system_glibc_wins_over_a_toolchain_sysroot():
    tree = Tree()

    def libc(name: str, version: bytes) -> tuple[tarfile.TarInfo, Callable[[], bytes]]:
        data = b"\0GNU C Library (Ubuntu GLIBC) stable release version " + version + b".\n"
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, (lambda: data)

    tree.apply(
        [
            libc("opt/conda/x86_64-conda-linux-gnu/sysroot/lib64/libc.so.6", b"2.17"),
            libc("usr/lib/x86_64-linux-gnu/libc.so.6", b"2.35"),
        ]
    )
    assert tree.glibc() == (2, 35)


def test_lock_round_trip(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# kferry wheels: python=3.12 platform=linux/arm64 glibc=2.31\n"
        "# resolved by pip from: r.txt\n"
        "MarkupSafe==3.0.2 \\\n    --hash=sha256:" + "a" * 64 + "\n"
    )
    parsed = read_lock(lock)
    assert parsed.target == Target("3.12", "linux/arm64", (2, 31))
    assert [(p.name, p.version) for p in parsed.pins] == [("markupsafe", "3.0.2")]
    assert "manylinux_2_31_aarch64" in parsed.target.platform_tags()
    assert "manylinux2014_aarch64" in parsed.target.platform_tags()


def test_bad_lock_names_file_and_line(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# kferry wheels: python=3.11 platform=linux/amd64 glibc=2.28\nfoo>=1\n")
    r = run_kferry("wheels", "check", str(tmp_path))
    assert r.code == 2
    assert f"{lock}:2:" in r.err and "Traceback" not in r.err


# --------------------------------------------------------------------------------------------
# Against registries, with the package index


@pytest.mark.registry
@pytest.mark.slow
def test_build_pushes_base_plus_one_layer_that_runs(
    source_registry, target_registry, tmp_path, tmp_path_factory
):
    base = push_base(source_registry)
    req = tmp_path / "requirements.txt"
    req.write_text(REQUIREMENTS)
    extra = tmp_path / "team.json"
    extra.write_text('{"team": "a"}\n')
    add = ["-r", str(req), "--add", f"{extra}:/etc/jupyter/team.json"]
    r = kferry_build(base.tag_ref, target_registry, "team/notebook:1", *add, source=source_registry)
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["python"]["executable"] == "/usr/bin/python3.11"
    assert out["wheel_tags"] == ["manylinux_2_36_x86_64", "cp311"]  # Debian 12: glibc 2.36
    assert out["python"]["site_packages"] == "/usr/local/lib/python3.11/dist-packages"
    assert {i["name"]: i["version"] for i in out["installed"]} == {
        "markupsafe": "3.0.2",
        "pycodestyle": "2.12.1",
    }

    # skopeo: the base layers are there under the same digests, one layer more
    base_raw = json.loads(skopeo_inspect_raw(base.tag_ref, registry=source_registry))
    ref = f"{target_registry.host}/team/notebook:1"
    new_raw = skopeo_inspect_raw(ref, registry=target_registry)
    new = json.loads(new_raw)
    assert out["digest"] == "sha256:" + hashlib.sha256(new_raw).hexdigest()
    assert new["mediaType"] == base_raw["mediaType"]
    assert new["layers"][:2] == base_raw["layers"]
    assert len(new["layers"]) == 3
    assert new["layers"][2]["digest"] == out["layer"]["digest"]

    _manifest, config, layers = image_layers(target_registry, "team/notebook", "1")
    base_config = json.loads(base.config.data)  # type: ignore[union-attr]
    assert config["rootfs"]["diff_ids"][:2] == base_config["rootfs"]["diff_ids"]
    assert config["rootfs"]["diff_ids"][2] == out["layer"]["diff_id"]
    assert len(config["history"]) == len(base_config["history"]) + 1
    assert "markupsafe==3.0.2" in config["history"][-1]["comment"]
    assert config["config"] == base_config["config"]
    assert [b for b in layers[:2]] == list(base_layers())

    # the new layer: root-owned, sorted, the console script points at the image's Python
    with tarfile.open(fileobj=io.BytesIO(layers[2]), mode="r:gz") as tar:
        names = tar.getnames()
        assert names == sorted(names)
        assert all(m.uid == 0 and m.mtime == 0 for m in tar.getmembers())
        script = tar.extractfile("usr/local/bin/pycodestyle")
        assert script is not None and script.read().startswith(b"#!/usr/bin/python3.11")

    # it runs: the image's own python3 imports both and reports their versions
    root = unpack(layers, tmp_path_factory.mktemp("rootfs"))
    printed = chroot(root, "/usr/bin/python3", "-c", IMPORT_CHECK)
    assert "markupsafe 3.0.2 &lt;a&gt;" in printed
    assert "pycodestyle 2.12.1" in printed
    assert chroot(root, "/usr/local/bin/pycodestyle", "--version").strip() == "2.12.1"
    assert (root / "etc/jupyter/team.json").read_text() == '{"team": "a"}\n'
    assert "files: /etc/jupyter/team.json" in config["history"][-1]["comment"]

    # the same inputs make the same layer, byte for byte
    again = kferry_build(
        base.tag_ref, target_registry, "team/notebook:2", *add, source=source_registry
    )
    assert again.code == 0, again.err
    assert json.loads(again.out)["layer"]["digest"] == out["layer"]["digest"]


@pytest.mark.registry
@pytest.mark.slow
def test_offline_wheelhouse_upgrades_a_package_of_the_base_into_a_bundle(
    source_registry, target_registry, tmp_path, tmp_path_factory
):
    base = push_base(source_registry)
    old = tmp_path / "old.txt"
    old.write_text("markupsafe==2.1.5\n")
    first = kferry_build(
        base.tag_ref, source_registry, "base/python-ms:2", "-r", str(old), source=source_registry
    )
    assert first.code == 0, first.err

    # connected side: a wheelhouse for the image's Python
    req = tmp_path / "requirements.txt"
    req.write_text(REQUIREMENTS)
    house = tmp_path / "wheels"
    saved = run_kferry(
        "wheels", "save", "-r", str(req), "--python", "3.11", "--glibc", "2.36", "-o", str(house)
    )
    assert saved.code == 0, saved.err
    mask = os.umask(0)
    os.umask(mask)
    assert (house / "requirements.lock").stat().st_mode & 0o777 == 0o666 & ~mask
    checked = run_kferry("wheels", "check", str(house), "--json")
    assert checked.code == 0, checked.out + checked.err
    assert json.loads(checked.out)["ok"] is True

    # far side: no index at all (a proxy that does not exist), into a bundle
    bundle = tmp_path / "bundle"
    r = run_kferry(
        "notebook",
        "build",
        f"{source_registry.host}/base/python-ms:2",
        "--wheels",
        str(house),
        "--to",
        "harbor.example/team/notebook:1",
        "-o",
        str(bundle),
        "--plain-http",
        source_registry.host,
        "--json",
        env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0"},
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["replaced"] == [{"name": "markupsafe", "from": "2.1.5", "to": "3.0.2"}]
    assert out["installed"] == [{"name": "pycodestyle", "version": "2.12.1"}]

    index = json.loads((bundle / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == out["digest"]

    def blob(digest: str):
        return (bundle / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()

    manifest = json.loads(blob(entry["digest"]))
    layers = [blob(layer["digest"]) for layer in manifest["layers"]]
    assert len(layers) == 4 and layers[:2] == list(base_layers())

    root = unpack(layers, tmp_path_factory.mktemp("rootfs"))
    site = root / "usr/local/lib/python3.11/dist-packages"
    assert sorted(p.name for p in site.glob("*arkup*.dist-info")) == ["MarkupSafe-3.0.2.dist-info"]
    printed = chroot(root, "/usr/bin/python3", "-c", IMPORT_CHECK)
    assert "markupsafe 3.0.2" in printed and "pycodestyle 2.12.1" in printed

    # a damaged or missing wheel is found on the far side
    (wheel,) = house.glob("pycodestyle-*.whl")
    wheel.write_bytes(wheel.read_bytes()[:-1] + b"!")
    for other in house.glob("MarkupSafe-*.whl"):
        other.unlink()
    for other in house.glob("markupsafe-*.whl"):
        other.unlink()
    bad = run_kferry("wheels", "check", str(house), "--json")
    assert bad.code == 1
    problems = json.loads(bad.out)["problems"]
    assert any(p.startswith(wheel.name) and "not the locked hash" in p for p in problems)
    assert "markupsafe==3.0.2: no wheel in" in " ".join(problems)


@pytest.mark.registry
def test_requirement_without_a_wheel_is_an_error_naming_it(source_registry, tmp_path):
    base = push_base(source_registry)
    req = tmp_path / "requirements.txt"
    req.write_text("markupsafe==0.23\n")  # sdist only
    r = kferry_build(base.tag_ref, source_registry, "x/y:1", "-r", str(req), source=source_registry)
    assert r.code == 1
    assert "no wheel of markupsafe==0.23 for Python 3.11 on linux/amd64" in r.err
    assert "Traceback" not in r.err
    with source_registry.client() as c:
        assert c.get("/v2/x/y/manifests/1").status_code == 404


def _tiny_layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.registry
def test_base_without_python_is_refused(source_registry, tmp_path):
    base = push_image(source_registry, "base/busy", tag="1", layers=[_tiny_layer({"bin/sh": b"x"})])
    req = tmp_path / "requirements.txt"
    req.write_text("pycodestyle\n")
    r = kferry_build(base.tag_ref, source_registry, "x/y:1", "-r", str(req), source=source_registry)
    assert r.code == 1
    assert "no python3 on the image's PATH" in r.err and "Traceback" not in r.err


@pytest.mark.registry
@pytest.mark.slow
def test_base_from_a_bundle_and_plain_files_only(source_registry, target_registry, tmp_path):
    """The far side has the base only in a bundle; the build adds files, no packages."""
    base = push_base(source_registry)
    bundle = tmp_path / "base.tar"
    saved = run_kferry(
        "bundle", "save", base.tag_ref, "-o", str(bundle), "--plain-http", source_registry.host
    )
    assert saved.code == 0, saved.err
    notes = tmp_path / "README.txt"
    notes.write_text("team notebook\n")
    r = kferry_build(
        base.tag_ref,
        target_registry,
        "team/plain:1",
        "--base-bundle",
        str(bundle),
        "--add",
        f"{notes}:/home/jovyan/README.txt",
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["installed"] == []
    base_raw = json.loads(skopeo_inspect_raw(base.tag_ref, registry=source_registry))
    new = json.loads(
        skopeo_inspect_raw(f"{target_registry.host}/team/plain:1", registry=target_registry)
    )
    assert new["layers"][:2] == base_raw["layers"] and len(new["layers"]) == 3
    _manifest, _config, layers = image_layers(target_registry, "team/plain", "1")
    with tarfile.open(fileobj=io.BytesIO(layers[2]), mode="r:gz") as tar:
        assert tar.getnames() == ["home", "home/jovyan", "home/jovyan/README.txt"]


@pytest.mark.registry
@pytest.mark.slow
def test_multiarch_base_builds_the_amd64_image_and_prints_its_digest(source_registry, tmp_path):
    amd64 = push_image(
        source_registry,
        "base/multi",
        layers=list(base_layers()),
        media="oci",
        platform="linux/amd64",
        seed="py",
    )
    arm64 = push_image(
        source_registry,
        "base/multi",
        layers=[_tiny_layer({"bin/sh": b"x"})],
        media="oci",
        platform="linux/arm64",
    )
    index = push_index(source_registry, "base/multi", images=[amd64, arm64], tag="1")
    extra = tmp_path / "x.txt"
    extra.write_text("x\n")
    args = ["notebook", "build", index.tag_ref, "--to", f"{source_registry.host}/team/multi:1"]
    args += ["--add", f"{extra}:/etc/x.txt", "--plain-http", source_registry.host]
    r = run_kferry(*args)
    assert r.code == 0, r.err
    ref = f"{source_registry.host}/team/multi:1"
    raw = skopeo_inspect_raw(ref, registry=source_registry)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert r.out.strip().splitlines()[-1] == f"{ref}@{digest}"
    assert "(linux/amd64): Python 3.11 at /usr/bin/python3.11" in r.out
    new = json.loads(raw)
    assert new["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert new["layers"][:2] == json.loads(amd64.manifest_bytes)["layers"]
    assert new["layers"][2]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"

    # the base is on the target registry: its layers were mounted, not sent again
    logs = source_registry.logs()
    for layer in new["layers"][:2]:
        digest = layer["digest"]
        assert f"mount={digest}" in logs.replace("%3A", ":")
        sent = [ln for ln in logs.splitlines() if "PUT /v2/team/multi/blobs/uploads/" in ln]
        assert not [ln for ln in sent if digest in ln.replace("%3A", ":")]  # not sent again

    arm = run_kferry(*args, "--platform", "linux/arm64")
    assert arm.code == 1 and "no python3 on the image's PATH" in arm.err
