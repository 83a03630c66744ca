"""`bundle save --split SIZE`: numbered volumes with a manifest of sizes and sha256s, checked by
`bundle verify` and read in order by `bundle load`; a single-file bundle's `.sha256`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_kferry
from tests.support.images import PushedImage, assert_copied, push_image, random_blob
from tests.support.proxy import ProxyFactory
from tests.support.registry import Registry, bundle_load_args
from tests.support.skopeo import skopeo_raw_digest

pytestmark = pytest.mark.registry

MIB = 1 << 20


@pytest.fixture
def pushed(source_registry: Registry) -> list[PushedImage]:
    base = random_blob(300_000, "volumes-base")
    return [
        push_image(source_registry, "kf/big", tag="1", layers=[2_600_000], shared_layers=[base]),
        push_image(source_registry, "kf/small", tag="2", layers=[40_000], shared_layers=[base]),
    ]


def save(source: Registry, images: list[PushedImage], out: Path, *extra: str) -> None:
    res = run_kferry(
        "bundle",
        "save",
        *(i.tag_ref for i in images),
        "--plain-http",
        source.host,
        "-o",
        str(out),
        *extra,
    )
    assert res.code == 0, res.err


def load(bundle: Path, target: Registry, lock: Path) -> tuple[int, str, str]:
    res = run_kferry(*bundle_load_args(bundle, target, lock), stdin=target.password_stdin())
    return res.code, res.out, res.err


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["b.tar", "b.tar.zst"])
def test_split_volumes_verify_and_load(
    name: str,
    source_registry: Registry,
    target_registry: Registry,
    pushed: list[PushedImage],
    tmp_path: Path,
) -> None:
    out = tmp_path / name
    save(source_registry, pushed, out, "--split", "1M")
    manifest = json.loads((tmp_path / f"{name}.volumes.json").read_text())
    vols = manifest["volumes"]
    assert len(vols) >= 3
    assert [v["name"] for v in vols] == [f"{name}.{i:03d}" for i in range(1, len(vols) + 1)]
    for v in vols[:-1]:
        assert v["size"] == MIB
    for v in vols:
        p = tmp_path / v["name"]
        assert p.stat().st_size == v["size"] and sha256(p) == v["sha256"]
    # nothing else is left beside the volumes: no single file, no temp file, no staging dir
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(v["name"] for v in vols), f"{name}.volumes.json"]
    )

    res = run_kferry("bundle", "verify", str(tmp_path / f"{name}.volumes.json"), "-o", "json")
    assert res.code == 0, res.out + res.err
    report = json.loads(res.out)
    assert report["ok"] and report["images"] == 2

    # the bundle's own name stands for its volumes too
    code, outp, err = load(out, target_registry, tmp_path.parent / f"{name}.lock.json")
    assert code == 0, err
    assert json.loads(outp)["copied"] == 2
    for img in pushed:
        repo = f"air/{source_registry.host.replace(':', '-')}/{img.repo}"
        assert_copied(img, target_registry, repo, tag=img.tag, check_blob_bytes=True)
        target = f"{target_registry.host}/{repo}:{img.tag}"
        assert skopeo_raw_digest(target, registry=target_registry) == img.digest


def test_missing_volume_is_named_and_nothing_is_loaded(
    source_registry: Registry, target_registry: Registry, pushed: list[PushedImage], tmp_path: Path
) -> None:
    out = tmp_path / "m" / "b.tar"
    save(source_registry, pushed, out, "--split", "1M")
    (out.parent / "b.tar.002").unlink()
    res = run_kferry("bundle", "verify", str(out.parent / "b.tar.volumes.json"))
    assert res.code == 1
    assert "volume b.tar.002 is missing" in res.out
    lock = tmp_path / "lock.json"
    code, _, err = load(out.parent / "b.tar.volumes.json", target_registry, lock)
    assert code == 2
    assert "volume b.tar.002 is missing" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not lock.exists()
    repo = f"air/{source_registry.host.replace(':', '-')}/kf/small"
    with target_registry.client() as client:  # nothing was written to the target
        assert client.get(f"/v2/{repo}/manifests/2").status_code == 404


def test_damaged_volume_is_named(
    source_registry: Registry, target_registry: Registry, pushed: list[PushedImage], tmp_path: Path
) -> None:
    out = tmp_path / "d" / "b.tar"
    save(source_registry, pushed, out, "--split", "1M")
    vol = out.parent / "b.tar.002"
    data = bytearray(vol.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    vol.write_bytes(bytes(data))
    res = run_kferry("bundle", "verify", str(out.parent / "b.tar.volumes.json"), "-o", "json")
    assert res.code == 1
    report = json.loads(res.out)
    assert not report["ok"]
    assert [d for d in report["damage"] if d.startswith("volume b.tar.002 is damaged")]
    assert not [d for d in report["damage"] if "b.tar.001" in d or "b.tar.003" in d]
    # a load reads through it and refuses the blob whose digest no longer matches
    code, _, err = load(out, target_registry, tmp_path / "lock.json")
    assert code != 0 and "Traceback" not in err


def test_single_file_bundle_gets_a_sha256(
    source_registry: Registry, pushed: list[PushedImage], tmp_path: Path
) -> None:
    out = tmp_path / "b.tar"
    save(source_registry, pushed, out)
    line = (tmp_path / "b.tar.sha256").read_text()
    assert line == f"{sha256(out)}  b.tar\n"
    check = subprocess.run(["sha256sum", "-c", "b.tar.sha256"], cwd=tmp_path, check=False)
    assert check.returncode == 0
    with open(out, "r+b") as f:  # damage the tar's trailing padding: only the checksum sees it
        f.seek(-10, 2)
        f.write(b"x")
    res = run_kferry("bundle", "verify", str(out), "-o", "json")
    assert res.code == 1
    assert any("b.tar.sha256" in d for d in json.loads(res.out)["damage"])


def test_resplit_replaces_a_larger_earlier_set_and_its_leftovers(
    source_registry: Registry, pushed: list[PushedImage], tmp_path: Path
) -> None:
    out = tmp_path / "b.tar.zst"
    save(source_registry, pushed, out, "--split", "1M")
    first = json.loads((tmp_path / "b.tar.zst.volumes.json").read_text())["volumes"]
    # a killed run's half-written volume, then a save with bigger volumes
    (tmp_path / ".b.tar.zst.002.kferry-volume-abc").write_bytes(b"half")
    save(source_registry, pushed, out, "--split", "2M")
    second = json.loads((tmp_path / "b.tar.zst.volumes.json").read_text())["volumes"]
    assert len(second) < len(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(v["name"] for v in second), "b.tar.zst.volumes.json"]
    )
    assert run_kferry("bundle", "verify", str(tmp_path / "b.tar.zst.volumes.json")).code == 0


@pytest.mark.parametrize("size", ["0.5M", "lots", "12"])
def test_bad_split_size_is_one_line(size: str, tmp_path: Path) -> None:
    res = run_kferry(
        "bundle", "save", "example.org/a:1", "-o", str(tmp_path / "b.tar"), "--split", size
    )
    assert res.code == 2 and "--split" in res.err and "Traceback" not in res.err


def test_killed_split_save_resumes_into_a_whole_set(
    source_registry: Registry, tmp_path: Path, make_flaky_proxy: ProxyFactory
) -> None:
    push_image(source_registry, "big", tag="1", layers=[8_000_000, 2000])
    slow = make_flaky_proxy(source_registry)
    slow.bytes_per_second = 4_000_000
    out = tmp_path / "b.tar"
    args = ["bundle", "save", slow.ref("big", "1"), "--plain-http", slow.host, "-o", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kferry", *args, "--split", "1M"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staging = tmp_path / "b.tar.kferry-partial"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(staging.rglob("*.partial")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b.tar.volumes.json").exists()  # no manifest for an unfinished set
    slow.bytes_per_second = None
    res = run_kferry(*args, "--split", "1M")
    assert res.code == 0, res.err
    vols = json.loads((tmp_path / "b.tar.volumes.json").read_text())["volumes"]
    assert len(vols) == 8 or len(vols) == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(v["name"] for v in vols), "b.tar.volumes.json"]
    )
    assert run_kferry("bundle", "verify", str(out)).code == 0


def test_second_load_of_a_split_bundle_sends_nothing(
    source_registry: Registry, target_registry: Registry, pushed: list[PushedImage], tmp_path: Path
) -> None:
    out = tmp_path / "s" / "b.tar.zst"
    save(source_registry, pushed, out, "--split", "1M")
    manifest = out.parent / "b.tar.zst.volumes.json"
    assert load(manifest, target_registry, tmp_path / "lock.json")[0] == 0
    code, outp, err = load(manifest, target_registry, tmp_path / "lock.json")
    assert code == 0, err
    again = json.loads(outp)
    assert again["skipped"] == 2 and again["bytes_sent"] == 0
