"""`kferry bundle save|load|verify`: OCI layouts that carry images across the air gap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kferry
from tests.support.images import PushedImage, assert_copied, push_image, push_multiarch, random_blob
from tests.support.proxy import ProxyFactory
from tests.support.registry import Registry, bundle_load_args
from tests.support.skopeo import skopeo_raw_digest

pytestmark = pytest.mark.registry


@pytest.fixture
def pushed(source_registry: Registry) -> list[PushedImage]:
    base = random_blob(400_000, "bundle-base")
    return [
        push_image(source_registry, "kf/a", tag="1", layers=[100_000], shared_layers=[base]),
        push_image(
            source_registry,
            "kf/deep/b",
            tag=None,
            layers=[50_000],
            shared_layers=[base],
            media="docker",
        ),
        push_multiarch(source_registry, "kf/multi", tag="2", layers=[30_000], shared_layers=[base]),
    ]


def refs(images: list[PushedImage]) -> list[str]:
    return [i.tag_ref if i.tag else i.ref for i in images]


def unique_blobs(images: list[PushedImage]) -> dict[str, int]:
    out: dict[str, int] = {}
    for img in images:
        for m in img.manifests():
            out[m.digest] = m.size
        for b in img.blobs:
            out[b.digest] = b.size
    return out


def save(source: Registry, images: list[PushedImage], out: Path) -> dict[str, Any]:
    res = run_kferry(
        "bundle", "save", *refs(images), "--plain-http", source.host, "-o", str(out), "--json"
    )
    assert res.code == 0, res.err
    summary: dict[str, Any] = json.loads(res.out)
    return summary


def load(bundle: Path, target: Registry, lock: Path) -> dict[str, Any]:
    res = run_kferry(*bundle_load_args(bundle, target, lock), stdin=target.password_stdin())
    assert res.code == 0, res.err
    summary: dict[str, Any] = json.loads(res.out)
    return summary


def test_directory_bundle_holds_every_blob_once(
    source_registry: Registry, pushed: list[PushedImage], tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    summary = save(source_registry, pushed, out)
    assert summary["copied"] == 3
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((out / "index.json").read_text())
    names = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }
    assert names == {r: i.digest for r, i in zip(refs(pushed), pushed, strict=True)}
    files = {f"sha256:{p.name}": p.stat().st_size for p in (out / "blobs" / "sha256").iterdir()}
    assert files == unique_blobs(pushed)  # every blob once, nothing else
    assert not list(out.rglob("*.partial"))


@pytest.mark.parametrize("name", ["bundle", "bundle.tar", "bundle.tar.zst"])
def test_save_verify_load_keeps_digests(
    name: str,
    source_registry: Registry,
    target_registry: Registry,
    pushed: list[PushedImage],
    tmp_path: Path,
) -> None:
    out = tmp_path / name
    save(source_registry, pushed, out)
    assert not (tmp_path / f"{name}.kferry-partial").exists()
    res = run_kferry("bundle", "verify", str(out), "-o", "json")
    assert res.code == 0, res.out + res.err
    report = json.loads(res.out)
    assert report["ok"] and report["images"] == 3 and report["blobs"] == len(unique_blobs(pushed))

    summary = load(out, target_registry, tmp_path / "lock.json")
    assert summary["copied"] == 3
    locks = {e["source"]: e for e in json.loads((tmp_path / "lock.json").read_text())["images"]}
    for ref, img in zip(refs(pushed), pushed, strict=True):
        repo = f"air/{source_registry.host.replace(':', '-')}/{img.repo}"
        assert_copied(img, target_registry, repo, tag=img.tag, check_blob_bytes=True)
        target = f"{target_registry.host}/{repo}" + (f":{img.tag}" if img.tag else f"@{img.digest}")
        assert skopeo_raw_digest(target, registry=target_registry) == img.digest
        assert locks[ref]["target"] == target and locks[ref]["digest"] == img.digest

    again = load(out, target_registry, tmp_path / "lock.json")
    assert again["skipped"] == 3 and again["bytes_sent"] == 0


def test_verify_reports_damage(
    source_registry: Registry, pushed: list[PushedImage], tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    save(source_registry, pushed, out)
    layer = next(b for b in pushed[0].blobs if b.size == 100_000)
    path = out / "blobs" / "sha256" / layer.digest.split(":")[1]
    data = bytearray(path.read_bytes())
    data[1234] ^= 0xFF
    path.write_bytes(bytes(data))
    missing = next(b for b in pushed[2].blobs if b.size == 30_000)
    (out / "blobs" / "sha256" / missing.digest.split(":")[1]).unlink()
    res = run_kferry("bundle", "verify", str(out), "-o", "json")
    assert res.code == 1
    damage = json.loads(res.out)["damage"]
    assert any(layer.digest.split(":")[1] in d and "hashes to" in d for d in damage)
    assert any(missing.digest in d and "missing" in d for d in damage)


def test_truncated_archive_is_damage(
    source_registry: Registry, pushed: list[PushedImage], tmp_path: Path
) -> None:
    out = tmp_path / "bundle.tar.zst"
    save(source_registry, pushed, out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    res = run_kferry("bundle", "verify", str(out))
    assert res.code == 1 and "DAMAGED" in res.out


def test_interrupted_save_resumes(
    source_registry: Registry, tmp_path: Path, make_flaky_proxy: ProxyFactory
) -> None:
    big = push_image(source_registry, "big", tag="1", layers=[16_000_000, 2000])
    slow = make_flaky_proxy(source_registry)
    slow.bytes_per_second = 6_000_000
    out = tmp_path / "b.tar"
    cmd = [
        sys.executable,
        "-m",
        "kferry",
        "bundle",
        "save",
        slow.ref("big", "1"),
        "--plain-http",
        slow.host,
        "-o",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = tmp_path / "b.tar.kferry-partial"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        partial = list(staging.rglob("*.partial"))
        if partial and partial[0].stat().st_size > 3_000_000:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing half-written under the output name
    done_before = {
        p.name for p in (staging / "blobs" / "sha256").iterdir() if not p.name.endswith(".partial")
    }
    assert done_before, "some blobs should have been finished before the kill"
    slow.bytes_per_second = None
    seen = len(slow.requests)
    res = run_kferry(
        "bundle", "save", slow.ref("big", "1"), "--plain-http", slow.host, "-o", str(out), "--json"
    )
    assert res.code == 0, res.err
    assert not staging.exists()
    assert run_kferry("bundle", "verify", str(out)).code == 0
    # blobs finished before the kill were not fetched again; the interrupted one was
    fetched = {r.path.rsplit(":", 1)[-1] for r in slow.requests[seen:] if "/blobs/" in r.path}
    assert fetched and not fetched & done_before
    assert big.layers[0].digest.split(":")[1] in fetched
