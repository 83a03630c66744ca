"""Fault injection (issue 10, "done when"): ``mirror``, ``bundle save`` and ``bundle load`` are
killed (SIGKILL and SIGTERM) at several points, run again, and then the target is checked by
skopeo, byte for byte (every manifest and blob copied out of the registry with ``skopeo copy
--all --preserve-digests`` into an OCI layout and compared with what was pushed), and no
temporary file may be left anywhere (working directory, TMPDIR, next to the bundle).

Kill points are chosen by what the run has done so far (requests seen by a FlakyProxy in front
of the source or the target, or files that appear: the unpacked copy, the packing file), not
by time, so they land where they should on a slow machine too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest

from kferry.transfer.layout.index import UNPACK_PREFIX
from tests.conftest import run_kferry
from tests.support.images import PushedImage, push_image, push_multiarch, random_blob
from tests.support.proxy import FlakyProxy, ProxyFactory
from tests.support.registry import Registry
from tests.support.skopeo import _flags, _run

pytestmark = [pytest.mark.registry, pytest.mark.slow]

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}


@pytest.fixture
def images(source_registry: Registry) -> list[PushedImage]:
    base = random_blob(400_000, "fault-base")
    return [
        push_image(source_registry, "fault/big", tag="1", layers=[1_500_000, 700_000],
                   shared_layers=[base]),
        push_multiarch(source_registry, "fault/multi", tag="2", layers=[500_000],
                       shared_layers=[base]),
        push_image(source_registry, "fault/bydigest", tag=None, layers=[900_000]),
    ]  # fmt: skip


def refs_via(proxy: FlakyProxy | Registry, images: list[PushedImage]) -> list[str]:
    return [proxy.ref(i.repo, i.tag or i.digest) for i in images]


def start(args: list[str], cwd: Path, env: dict[str, str], stdin: bytes) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kferry", *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    return proc


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], sig: int) -> bool:
    """Send ``sig`` once ``ready()``; False when the run ended before that point."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(sig)
            proc.wait(60)
            return True
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("kill point never reached")


def leftovers(*dirs: Path, allowed: set[str]) -> list[str]:
    found = []
    for d in dirs:
        for p in d.rglob("*"):
            if p.is_file() and p.name not in allowed:
                found.append(str(p))
            if p.is_dir() and any(w in p.name for w in ("kferry-", "partial")):
                found.append(str(p) + "/")
    return found


def skopeo_check(
    target: Registry, repo_prefix: str, images: list[PushedImage], source_host: str, work: Path
) -> None:
    """skopeo copies each image out of the target; every manifest and blob byte compared."""
    for img in images:
        repo = f"{repo_prefix}/{source_host.replace(':', '-')}/{img.repo}"
        ref = f"{target.host}/{repo}" + (f":{img.tag}" if img.tag else f"@{img.digest}")
        out = work.parent / f"skopeo-{img.repo.replace('/', '-')}"
        shutil.rmtree(out, ignore_errors=True)
        _run(
            ["--insecure-policy", "copy", "--all", "--preserve-digests",
             *_flags(target, "src-"), f"docker://{ref}", f"oci:{out}"],
            timeout=300,
        )  # fmt: skip
        blobs = out / "blobs" / "sha256"
        for m in img.manifests():
            assert (blobs / m.digest.split(":")[1]).read_bytes() == m.manifest_bytes, ref
        for b in img.blobs:
            assert (blobs / b.digest.split(":")[1]).read_bytes() == b.data, (ref, b.digest)
        shutil.rmtree(out)


def check_lock(lock: Path, images: list[PushedImage]) -> None:
    entries = {e["digest"] for e in json.loads(lock.read_text())["images"]}
    assert {i.digest for i in images} <= entries


POINTS = ["early", "middle", "late"]
COUNTS = {"early": 3, "middle": 12, "late": 24}


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    return work, tmp


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("sig", list(SIGNALS))
def test_killed_mirror_reruns_to_an_exact_copy(
    source_registry: Registry,
    target_registry: Registry,
    images: list[PushedImage],
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
    sig: str,
    point: str,
) -> None:
    work, tmp = _dirs(tmp_path)
    proxy = make_flaky_proxy(source_registry)
    proxy.bytes_per_second = 2_000_000
    args = [
        "mirror", *refs_via(proxy, images), "--plain-http", proxy.host,
        "--to", f"{target_registry.host}/proj", "--ca-file", str(target_registry.ca_file),
        "--username", str(target_registry.username), "--password-stdin", "-o", "json",
    ]  # fmt: skip
    stdin = f"{target_registry.password}\n".encode()
    env = {"TMPDIR": str(tmp)}
    proc = start(args, work, env, stdin)
    killed = kill_when(proc, lambda: len(proxy.requests) >= COUNTS[point], SIGNALS[sig])
    assert killed or point == "late"
    proxy.bytes_per_second = None
    res = run_kferry(*args, stdin=stdin, env=env, cwd=work)
    assert res.code == 0, res.out + res.err
    # the proxy host is part of the target path under the keep layout
    skopeo_check(target_registry, "proj", images, proxy.host, work)
    check_lock(work / "kferry.lock.json", images)
    assert leftovers(work, tmp, allowed={"kferry.lock.json"}) == []


@pytest.mark.parametrize("point", [*POINTS, "packing"])
@pytest.mark.parametrize("sig", list(SIGNALS))
def test_killed_bundle_save_reruns_to_a_complete_bundle(
    source_registry: Registry,
    target_registry: Registry,
    images: list[PushedImage],
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
    sig: str,
    point: str,
) -> None:
    work, tmp = _dirs(tmp_path)
    proxy = make_flaky_proxy(source_registry)
    proxy.bytes_per_second = 2_000_000
    out = work / "b.tar.zst"
    args = ["bundle", "save", *refs_via(source_registry, images), "--plain-http",
            source_registry.host, "-o", str(out)]  # fmt: skip
    if point != "packing":
        args[2 : 2 + len(images)] = refs_via(proxy, images)
        args[args.index("--plain-http") + 1] = proxy.host
    env = {"TMPDIR": str(tmp)}
    proc = start(args, work, env, b"")
    if point == "packing":
        ready = lambda: any(work.glob(".b.tar.zst.kferry-pack-*"))  # noqa: E731
    else:
        ready = lambda: len(proxy.requests) >= COUNTS[point]  # noqa: E731
    killed = kill_when(proc, ready, SIGNALS[sig])
    assert killed or point in ("late", "packing")
    proxy.bytes_per_second = None
    res = run_kferry(*args, env=env, cwd=work)
    assert res.code == 0, res.out + res.err
    assert leftovers(work, tmp, allowed={"b.tar.zst", "b.tar.zst.sha256"}) == []
    assert run_kferry("bundle", "verify", str(out)).code == 0
    res = run_kferry(
        "bundle", "load", str(out), "--to", f"{target_registry.host}/air", "--ca-file",
        str(target_registry.ca_file), "--username", str(target_registry.username),
        "--password-stdin", stdin=f"{target_registry.password}\n".encode(),
        env=env, cwd=work,
    )  # fmt: skip
    assert res.code == 0, res.out + res.err
    host = source_registry.host if point == "packing" else proxy.host
    skopeo_check(target_registry, "air", images, host, work)


@pytest.mark.parametrize("point", ["unpacking", "early", "middle"])
@pytest.mark.parametrize("sig", list(SIGNALS))
def test_killed_bundle_load_reruns_to_an_exact_copy(
    source_registry: Registry,
    target_registry: Registry,
    images: list[PushedImage],
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
    sig: str,
    point: str,
) -> None:
    work, tmp = _dirs(tmp_path)
    bundle = tmp_path / "media" / "b.tar.zst"
    bundle.parent.mkdir()
    res = run_kferry("bundle", "save", *refs_via(source_registry, images), "--plain-http",
                     source_registry.host, "-o", str(bundle))  # fmt: skip
    assert res.code == 0, res.err
    proxy = make_flaky_proxy(target_registry)
    # Hold the run up where the kill should land: uploads answered 503 for a moment.
    if point != "unpacking":
        proxy.fail_for(4, status=503, retry_after=1, method="PUT")
    args = [
        "bundle", "load", str(bundle), "--to", f"{proxy.host}/air", "--plain-http", proxy.host,
        "--username", str(target_registry.username), "--password-stdin",
    ]  # fmt: skip
    stdin = f"{target_registry.password}\n".encode()
    env = {"TMPDIR": str(tmp)}
    proc = start(args, work, env, stdin)
    if point == "unpacking":
        ready = lambda: any(tmp.glob(f"{UNPACK_PREFIX}*/blobs"))  # noqa: E731
    else:
        ready = lambda: len(proxy.requests) >= COUNTS[point]  # noqa: E731
    killed = kill_when(proc, ready, SIGNALS[sig])
    assert killed
    if sig == "TERM":
        assert list(tmp.iterdir()) == [], "SIGTERM must remove the unpacked copy"
    res = run_kferry(*args, stdin=stdin, env=env, cwd=work, timeout=300)
    assert res.code == 0, res.out + res.err
    skopeo_check(target_registry, "air", images, source_registry.host, work)
    check_lock(work / "kferry.lock.json", images)
    assert (
        leftovers(
            work, tmp, bundle.parent, allowed={"kferry.lock.json", "b.tar.zst", "b.tar.zst.sha256"}
        )
        == []
    )


def test_killed_split_bundle_load_resumes_without_sending_again(
    source_registry: Registry,
    target_registry: Registry,
    images: list[PushedImage],
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    """A load of a split bundle killed midway, rerun: the blobs each repository got before
    the kill are not sent to it again; the rest is, and the target ends an exact copy."""
    work, tmp = _dirs(tmp_path)
    bundle = tmp_path / "media" / "b.tar"
    bundle.parent.mkdir()
    res = run_kferry("bundle", "save", *refs_via(source_registry, images), "--plain-http",
                     source_registry.host, "-o", str(bundle), "--split", "1M")  # fmt: skip
    assert res.code == 0, res.err
    assert len(list(bundle.parent.glob("b.tar.0*"))) >= 3
    proxy = make_flaky_proxy(target_registry)
    proxy.fail_for(30, status=503, retry_after=1, method="PUT", path=r"/manifests/")
    args = [
        "bundle", "load", str(bundle.with_name("b.tar.volumes.json")), "--to",
        f"{proxy.host}/air", "--plain-http", proxy.host,
        "--username", str(target_registry.username), "--password-stdin",
    ]  # fmt: skip
    stdin = f"{target_registry.password}\n".encode()
    env = {"TMPDIR": str(tmp)}

    def puts(start: int = 0, done: bool = True) -> set[tuple[str, str]]:
        """(repository, digest) of each blob PUT (answered 201 when ``done``)."""
        return {
            (r.path.split("/blobs/")[0], unquote(r.path).split("digest=")[-1].split("&")[0])
            for r in proxy.requests[start:]
            if r.method == "PUT" and "digest=" in r.path and (r.status == 201 or not done)
        }

    def sent() -> set[tuple[str, str]]:
        return puts()

    proc = start(args, work, env, stdin)
    assert kill_when(proc, lambda: len(sent()) >= 2, signal.SIGKILL)
    before, seen = sent(), len(proxy.requests)
    proxy.clear_faults()
    res = run_kferry(*args, stdin=stdin, env=env, cwd=work, timeout=300)
    assert res.code == 0, res.out + res.err
    # (A blob that the killed run put in one repository only may be sent again to another
    # one: a new run does not know where to mount it from.)
    again = puts(seen, done=False)
    assert before and not before & again, (before, again)
    skopeo_check(target_registry, "air", images, source_registry.host, work)
