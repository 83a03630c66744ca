"""Indexes whose entries are indexes (issue 10, item 2): the whole graph, any depth, bounded.

mirror, bundle save, bundle verify and bundle load each walk every level; the deepest image's
blobs are checked on the target byte for byte and by skopeo. Past MAX_INDEX_DEPTH levels the
image is refused with a message (a hostile registry cannot make the walk endless).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kferry.transfer.media import MAX_INDEX_DEPTH
from tests.conftest import run_kferry
from tests.support.images import PushedImage, assert_copied, push_image, push_index, push_multiarch
from tests.support.registry import Registry
from tests.support.skopeo import skopeo_raw_digest
from tests.test_bundle import load
from tests.test_mirror import mirror, target_repo

pytestmark = pytest.mark.registry


def nested(source: Registry, repo: str, depth: int, tag: str = "1") -> PushedImage:
    """An index ``depth`` levels deep: a multi-arch index at the bottom, then indexes over
    (the index below, a plain image) up to the top."""
    below = push_multiarch(source, repo, layers=[40_000])
    for level in range(depth - 2):
        extra = push_image(source, repo, layers=[10_000 + level])
        below = push_index(source, repo, images=[below, extra])
    return push_index(source, repo, images=[below], tag=tag)


def deepest_layer(img: PushedImage) -> str:
    while img.children:
        img = img.children[0]
    return img.layers[-1].digest


def test_mirror_copies_every_level(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = nested(source_registry, "nest/mirror", 4)
    res, _ = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.out + res.err
    repo = target_repo(img, source_registry)
    assert_copied(img, target_registry, repo, tag="1", check_blob_bytes=True)
    for m in img.manifests():
        assert (
            skopeo_raw_digest(f"{target_registry.host}/{repo}@{m.digest}", registry=target_registry)
            == m.digest
        )


@pytest.mark.parametrize("name", ["bundle", "bundle.tar", "bundle.tar.zst"])
def test_bundle_save_verify_load_every_level(
    name: str, source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = nested(source_registry, "nest/bundle", 4)
    out = tmp_path / name
    res = run_kferry(
        "bundle", "save", img.tag_ref, "--plain-http", source_registry.host, "-o", str(out)
    )
    assert res.code == 0, res.out + res.err
    res = run_kferry("bundle", "verify", str(out), "-o", "json")
    assert res.code == 0 and json.loads(res.out)["ok"], res.out
    load(out, target_registry, tmp_path / "lock.json")
    repo = f"air/{source_registry.host.replace(':', '-')}/{img.repo}"
    assert_copied(img, target_registry, repo, tag="1", check_blob_bytes=True)
    assert (
        skopeo_raw_digest(f"{target_registry.host}/{repo}:1", registry=target_registry)
        == img.digest
    )


def test_verify_finds_a_missing_blob_three_levels_down(
    source_registry: Registry, tmp_path: Path
) -> None:
    img = nested(source_registry, "nest/verify", 4)
    out = tmp_path / "bundle"
    res = run_kferry(
        "bundle", "save", img.tag_ref, "--plain-http", source_registry.host, "-o", str(out)
    )
    assert res.code == 0, res.out + res.err
    layer = deepest_layer(img)
    (out / "blobs" / "sha256" / layer.split(":")[1]).unlink()
    res = run_kferry("bundle", "verify", str(out), "-o", "json")
    assert res.code == 1
    report = json.loads(res.out)
    assert any(layer in d and "missing" in d for d in report["damage"]), report


def test_nesting_past_the_bound_is_refused(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = nested(source_registry, "nest/deep", MAX_INDEX_DEPTH + 2)
    res, summary = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 1
    assert f"nested deeper than {MAX_INDEX_DEPTH} levels" in summary["failures"][0]["error"]
    assert "Traceback" not in res.err
