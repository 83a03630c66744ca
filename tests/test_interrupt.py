"""Ctrl-C during `kferry mirror`: SIGINT sent to a real run mid-copy (real registries of
tests/support, the source behind a throttling proxy so that the run is long enough to be cut).

One SIGINT: the run stops within a few seconds (blob streams stop at their next chunk), exits
130, writes the lock for exactly the images that completed (checked against the target
registry itself) and prints the command that resumes; rerunning it copies the rest and skips
the completed images. A second SIGINT while the first is being handled (workers stuck inside a
request) ends the process at once.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import time
from pathlib import Path

import pytest

from tests.support.images import assert_copied, manifest_exists
from tests.support.proxy import ProxyFactory
from tests.support.registry import Registry
from tests.test_progress import finish, mirror_args, push_set, slow, start_piped, wait_for_lines

pytestmark = pytest.mark.registry
COPIED = re.compile(r"^\[ ?\d+/10\] copied (\S+) -> ")


def target_repo(proxy_host: str, repo: str) -> str:
    return f"proj/{proxy_host.replace(':', '-')}/{repo}"


def test_ctrl_c_stops_promptly_records_what_completed_and_a_rerun_finishes(
    source_registry: Registry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    images = push_set(source_registry, 10, 1_000_000, "interrupted")
    proxy = slow(make_flaky_proxy, source_registry, 1_000_000)  # about 1 s per image
    lock = tmp_path / "lock.json"
    argv, stdin = mirror_args(proxy, images, target_registry, lock, "-j", "2")
    proc, run = start_piped(argv, stdin)
    wait_for_lines(run, r"^\[ ?\d+/10\] copied ", 2)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    finish(proc, run, timeout=30)
    assert run.code == 130, run.err
    assert run.ended - sent < 5, f"took {run.ended - sent:.1f} s to stop"

    copied = {m.group(1) for _, line in run.lines if (m := COPIED.match(line))}
    recorded = {e["source"] for e in json.loads(lock.read_text())["images"]}
    assert 2 <= len(recorded) < 10, run.err
    assert recorded == copied, (recorded, copied)
    with target_registry.client() as client:
        present = {
            proxy.ref(i.repo, "1")
            for i in images
            if manifest_exists(client, target_repo(proxy.host, i.repo), "1")
        }
    assert present == recorded, "the lock must hold exactly the images at the target"
    resume = shlex.join(["kferry", *argv[3:]])
    assert f"{len(recorded)} of 10 images complete; the lock file {lock} records them" in run.err
    assert resume in run.err.splitlines()[-1], run.err
    assert "kferry: stopping (Ctrl-C again to stop at once)" in run.err
    assert "Traceback" not in run.err

    proxy.bytes_per_second = None
    proc, rerun = start_piped([*argv, "-o", "json"], stdin)
    finish(proc, rerun)
    assert rerun.code == 0, rerun.err
    summary = json.loads(rerun.out)
    assert summary["skipped"] == len(recorded)
    assert summary["copied"] == 10 - len(recorded)
    for img in images:
        assert_copied(img, target_registry, target_repo(proxy.host, img.repo), tag="1")
    assert len(json.loads(lock.read_text())["images"]) == 10


def test_second_ctrl_c_exits_at_once(
    source_registry: Registry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    images = push_set(source_registry, 2, 1_000_000, "twice")
    # 64 KiB then a 3 s pause: the workers sit inside a read when the first SIGINT comes
    proxy = slow(make_flaky_proxy, source_registry, 20_000)
    argv, stdin = mirror_args(proxy, images, target_registry, tmp_path / "lock.json")
    proc, run = start_piped(argv, stdin)
    wait_for_lines(run, r"^2 images: .* to move", 1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None, "the first SIGINT should still be waiting for the workers"
    proc.send_signal(signal.SIGINT)
    second = time.monotonic()
    finish(proc, run, timeout=30)
    assert run.code == 130, run.err
    assert run.ended - second < 1.5, f"took {run.ended - second:.1f} s after the second SIGINT"
    assert "interrupted again: stopping now" in run.err
    assert "Traceback" not in run.err
