"""The lock file and output files (issue 10, items 8 and 11): validated when read, before any
copy; updated under a file lock so concurrent runs keep every entry; outputs keep the user's
mode and symlinks."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kferry.name import parse
from kferry.plan.lock import LockEntry, read_lock, write_lock
from tests.conftest import run_kferry
from tests.support.images import push_image
from tests.support.registry import Registry

POD = (
    "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\n"
    "spec:\n  containers:\n  - {name: c, image: 'busybox:1.36'}\n"
)
GOOD = {
    "source": "docker.io/library/busybox:1.36",
    "target": "reg.local/kf/docker.io/library/busybox:1.36",
    "digest": "sha256:" + "d" * 64,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "size": 1,
}


def _write_many(path: str, worker: int, count: int) -> None:
    for i in range(count):
        entry = LockEntry(
            parse(f"docker.io/w{worker}/img{i}:1"),
            parse(f"reg.local/w{worker}/{i}:1"),
            "sha256:" + "d" * 64,
            "application/vnd.oci.image.index.v1+json",
            1,
        )
        write_lock(Path(path), [entry])


def test_concurrent_runs_keep_every_entry(tmp_path: Path) -> None:
    lock = tmp_path / "kferry.lock.json"
    # spawn, not fork: under pytest-xdist the worker has threads (execnet's), and a fork can
    # copy a lock one of them holds; children then hang (seen: 4 of 6 stuck, holding the flock)
    ctx = multiprocessing.get_context("spawn")
    workers, count = 6, 25
    procs = [ctx.Process(target=_write_many, args=(str(lock), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(read_lock(lock)) == workers * count
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kferry.lock.json"]  # no leftovers


def _lock_with(tmp_path: Path, **changes: Any) -> Path:
    lock = tmp_path / "kferry.lock.json"
    lock.write_text(json.dumps({"version": 1, "images": [dict(GOOD, **changes)]}))
    return lock


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"digest": "sha256:" + "d" * 64 + "\n  evil: injected"}, "images[0].digest"),
        ({"digest": "md5:1234"}, "images[0].digest"),
        ({"target": "reg.local/kf/UPPER CASE:1"}, "images[0].target"),
        ({"target": 12345}, "images[0].target"),
        ({"source": ["x"]}, "images[0].source"),
        ({"size": "big"}, "images[0].size"),
    ],
)
def test_bad_lock_entries_are_input_errors(
    tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD)
    lock = _lock_with(tmp_path, **changes)
    out = tmp_path / "out.yaml"
    res = run_kferry(
        "rewrite",
        str(manifest),
        "--to",
        "reg.local/kf",
        "--lock",
        str(lock),
        "--pin-digests",
        "-o",
        str(out),
    )
    assert res.code == 2, res.out + res.err
    assert f"{lock}: {field}" in res.err
    assert "Traceback" not in res.err
    assert not out.exists()


@pytest.mark.registry
def test_corrupt_lock_is_noticed_before_copying(
    source_registry: Registry, registry_factory: Any, tmp_path: Path
) -> None:
    target = registry_factory(tls=False, name="plain-target")
    img = push_image(source_registry, "lock/early", tag="1", layers=[50_000])
    lock = tmp_path / "kferry.lock.json"
    lock.write_text('{"version": 1, "images": [{"source": "x"')
    res = run_kferry(
        "mirror",
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        "--plain-http",
        target.host,
        "--to",
        f"{target.host}/proj",
        "--lock",
        str(lock),
    )
    assert res.code == 2, res.out + res.err
    assert str(lock) in res.err and "Traceback" not in res.err
    assert not any(target.storage.rglob("data")), "nothing may be copied with a broken lock"


@pytest.mark.parametrize("existing", [None, 0o644, 0o640])
def test_outputs_keep_the_users_mode(tmp_path: Path, existing: int | None) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD)
    out = tmp_path / "out.yaml"
    if existing is not None:
        out.write_text("old")
        out.chmod(existing)
    old = os.umask(0o022)
    try:
        res = run_kferry("rewrite", str(manifest), "--to", "reg.local/kf", "-o", str(out))
    finally:
        os.umask(old)
    assert res.code == 0, res.err
    want = existing if existing is not None else 0o644
    assert stat.S_IMODE(out.stat().st_mode) == want
    assert "reg.local/kf" in out.read_text()


def test_output_onto_a_symlink_writes_through_it(tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD)
    real = tmp_path / "real" / "out.yaml"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "out.yaml"
    link.symlink_to(real)
    res = run_kferry("rewrite", str(manifest), "--to", "reg.local/kf", "-o", str(link))
    assert res.code == 0, res.err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "reg.local/kf" in real.read_text()
