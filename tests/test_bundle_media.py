"""Bundles on real media and interrupted runs (issue 10, items 5, 10 and 11).

A read-only medium (a DVD) and a full one (a USB stick) are tmpfs mounts in a private mount
namespace (``unshare -rm``, util-linux; skipped where user namespaces are not allowed); the
registries are the usual loopback ones.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kferry.transfer.layout.index import UNPACK_PREFIX
from tests.conftest import ROOT, run_kferry
from tests.support.images import PushedImage, assert_copied, push_image
from tests.support.proxy import ProxyFactory
from tests.support.registry import Registry, bundle_load_args

pytestmark = pytest.mark.registry


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _unshare_works(), reason="no user+mount namespaces here")


def save_zst(source: Registry, img: PushedImage, out: Path) -> None:
    res = run_kferry("bundle", "save", img.tag_ref, "--plain-http", source.host, "-o", str(out))
    assert res.code == 0, res.out + res.err


def load_args(bundle: str | Path, target: Registry, lock: Path) -> list[str]:
    return bundle_load_args(bundle, target, lock)


def in_namespace(
    script: str, kferry_args: list[str], stdin: bytes, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    """Run ``script`` (mounts) then kferry in a private user+mount namespace."""
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "kferry", *kferry_args])
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"set -e; {script}; exec {cmd}"],
        input=stdin,
        capture_output=True,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT / "src")},
        timeout=300,
        check=False,
    )


def repo_of(img: PushedImage, source: Registry) -> str:
    return f"air/{source.host.replace(':', '-')}/{img.repo}"


@needs_mounts
def test_load_zst_from_a_read_only_medium(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = push_image(source_registry, "dvd/app", tag="1", layers=[400_000])
    bundle = tmp_path / "b.tar.zst"
    save_zst(source_registry, img, bundle)
    dvd, tmp = tmp_path / "dvd", tmp_path / "tmp"
    dvd.mkdir()
    tmp.mkdir()
    script = f"mount -t tmpfs tmpfs {dvd} && cp {bundle} {dvd}/ && mount -o remount,ro {dvd}"
    proc = in_namespace(
        script,
        load_args(dvd / "b.tar.zst", target_registry, tmp_path / "lock.json"),
        f"{target_registry.password}\n".encode(),
        {"TMPDIR": str(tmp)},
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert_copied(img, target_registry, repo_of(img, source_registry), tag="1")
    assert list(tmp.iterdir()) == []


@needs_mounts
def test_load_zst_with_a_full_tmp_dir_says_so_once(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = push_image(source_registry, "usb/app", tag="1", layers=[3_000_000])
    bundle = tmp_path / "b.tar.zst"
    save_zst(source_registry, img, bundle)
    small = tmp_path / "small"
    small.mkdir()
    proc = in_namespace(
        f"mount -t tmpfs -o size=1m tmpfs {small}",
        [*load_args(bundle, target_registry, tmp_path / "lock.json"), "--tmp-dir", str(small)],
        f"{target_registry.password}\n".encode(),
        {},
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1, proc.stdout.decode() + err
    assert "No space left on device" in err and "--tmp-dir" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@needs_mounts
def test_save_onto_a_read_only_or_full_medium_is_one_line(
    source_registry: Registry, tmp_path: Path
) -> None:
    img = push_image(source_registry, "ro/app", tag="1", layers=[3_000_000])
    for opts, name in (("ro", "ro"), ("size=1m", "full")):
        medium = tmp_path / name
        medium.mkdir()
        proc = in_namespace(
            f"mount -t tmpfs -o {opts} tmpfs {medium}",
            [
                "bundle",
                "save",
                img.tag_ref,
                "--plain-http",
                source_registry.host,
                "-o",
                str(medium / "b.tar.zst"),
            ],
            b"",
            {},
        )
        err = proc.stderr.decode() + proc.stdout.decode()
        assert proc.returncode == 1, err
        assert "Traceback" not in err
        assert ("Read-only file system" in err) or ("No space left on device" in err), err


def _slow_load(
    source: Registry, target: Registry, tmp_path: Path, make_flaky_proxy: ProxyFactory
) -> tuple[subprocess.Popen[bytes], Path, PushedImage, Path]:
    """A bundle load held up by a target answering 503 (so the unpacked copy is in use)."""
    img = push_image(source, "kill/app", tag="1", layers=[2_000_000])
    bundle = tmp_path / "b.tar.zst"
    save_zst(source, img, bundle)
    proxy = make_flaky_proxy(target)
    proxy.fail_for(6, status=503, retry_after=1)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args = load_args(bundle, target, tmp_path / "lock.json")
    args[args.index("--to") + 1] = f"{proxy.host}/air"
    args += ["--plain-http", proxy.host]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kferry", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert proc.stdin is not None
    proc.stdin.write(f"{target.password}\n".encode())
    proc.stdin.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(tmp.glob(f"{UNPACK_PREFIX}*/index.json")):
        time.sleep(0.02)
    assert any(tmp.glob(f"{UNPACK_PREFIX}*/index.json")), "the bundle should be unpacked by now"
    return proc, tmp, img, bundle


def test_sigterm_during_load_removes_the_unpacked_copy(
    source_registry: Registry,
    target_registry: Registry,
    tmp_path: Path,
    make_flaky_proxy: ProxyFactory,
) -> None:
    proc, tmp, _, _ = _slow_load(source_registry, target_registry, tmp_path, make_flaky_proxy)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    assert list(tmp.iterdir()) == []


def test_sigkill_leftover_is_removed_by_the_next_load(
    source_registry: Registry,
    target_registry: Registry,
    tmp_path: Path,
    make_flaky_proxy: ProxyFactory,
) -> None:
    proc, tmp, img, bundle = _slow_load(
        source_registry, target_registry, tmp_path, make_flaky_proxy
    )
    proc.kill()
    proc.wait(30)
    assert list(tmp.iterdir()), "SIGKILL cannot clean up: a leftover is expected here"
    res = run_kferry(
        *load_args(bundle, target_registry, tmp_path / "lock.json"),
        stdin=f"{target_registry.password}\n".encode(),
        env={"TMPDIR": str(tmp)},
    )
    assert res.code == 0, res.out + res.err
    assert list(tmp.iterdir()) == []
    assert_copied(img, target_registry, repo_of(img, source_registry), tag="1")


def test_two_saves_to_one_output_say_in_use(
    source_registry: Registry, tmp_path: Path, make_flaky_proxy: ProxyFactory
) -> None:
    push_image(source_registry, "busy/app", tag="1", layers=[4_000_000])
    slow = make_flaky_proxy(source_registry)
    slow.bytes_per_second = 1_000_000
    out = tmp_path / "b.tar"
    args = ["bundle", "save", slow.ref("busy/app", "1"), "--plain-http", slow.host, "-o", str(out)]
    first = subprocess.Popen(
        [sys.executable, "-m", "kferry", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = tmp_path / ".b.tar.kferry-lock"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not lock.exists():
            time.sleep(0.02)
        res = run_kferry(*args)
        assert res.code == 1, res.out + res.err
        assert "in use by another kferry run" in res.err and "Traceback" not in res.err
    finally:
        first.kill()
        first.wait()


def test_rerun_refetches_a_blob_damaged_in_place(source_registry: Registry, tmp_path: Path) -> None:
    img = push_image(source_registry, "same/size", tag="1", layers=[200_000])
    out = tmp_path / "bundle"
    args = ["bundle", "save", img.tag_ref, "--plain-http", source_registry.host, "-o", str(out)]
    assert run_kferry(*args).code == 0
    blob = out / "blobs" / "sha256" / img.layers[-1].digest.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))  # same size, other bytes
    res = run_kferry(*args)
    assert res.code == 0, res.out + res.err
    assert blob.read_bytes() == img.layers[-1].data
    assert run_kferry("bundle", "verify", str(out)).code == 0


def test_killed_pack_leftover_is_removed_by_the_next_save(
    source_registry: Registry, tmp_path: Path
) -> None:
    img = push_image(source_registry, "pack/left", tag="1")
    out = tmp_path / "b.tar.zst"
    leftover = tmp_path / ".b.tar.zst.kferry-pack-x1y2z3"
    leftover.write_bytes(b"\0" * 1000)  # what a SIGKILL while packing leaves
    save_zst(source_registry, img, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.zst", "b.tar.zst.sha256"]
    res = run_kferry("bundle", "verify", str(out), "-o", "json")
    assert json.loads(res.out)["ok"]
