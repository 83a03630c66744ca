"""``--shard I/N`` splits a transfer across hosts; ``kferry lock merge`` joins their locks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kferry.errors import InputError
from kferry.name import parse
from kferry.plan.shard import Shard
from kferry.transfer.layout.index import REF_NAME
from tests.conftest import run_kferry
from tests.support.images import PushedImage, push_image, random_blob
from tests.support.registry import Registry


def test_shards_are_disjoint_and_cover_the_list_in_any_order() -> None:
    refs = [parse(f"registry.example/team/app{i}:v{i % 3}") for i in range(200)]
    parts = [Shard(i, 3).select(refs) for i in range(3)]
    assert sorted(r.canonical for p in parts for r in p) == sorted(r.canonical for r in refs)
    assert all(parts)  # 200 images: none of 3 shards is empty
    shuffled = list(reversed(refs))
    assert [Shard(1, 3).select(shuffled)] == [list(reversed(parts[1]))]
    assert Shard(0, 1).select(refs) == refs


@pytest.mark.parametrize("text", ["3/3", "1/0", "-1/3", "a/b", "1", "1/3/4"])
def test_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(InputError, match="--shard"):
        Shard.parse(text)


def test_bad_shard_on_the_command_line_exits_2() -> None:
    res = run_kferry("mirror", "x.example/a:1", "--to", "r.example/p", "--shard", "3/3")
    assert res.code == 2 and "--shard" in res.err and "Traceback" not in res.err


def _lock(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"version": 1, "images": list(entries)}))
    return path


def _entry(source: str, digest: str) -> dict[str, Any]:
    return {"source": source, "target": "r.example/p/" + source, "digest": digest}


def test_lock_merge_refuses_a_conflict_naming_the_image(tmp_path: Path) -> None:
    a = _lock(tmp_path / "a.json", _entry("x.example/a:1", "sha256:" + "1" * 64))
    b = _lock(tmp_path / "b.json", _entry("x.example/a:1", "sha256:" + "2" * 64))
    res = run_kferry("lock", "merge", str(a), str(b), "-o", str(tmp_path / "out.json"))
    assert res.code == 2 and "x.example/a:1" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "out.json").exists()


def test_lock_merge_joins_the_referrers_of_one_image(tmp_path: Path) -> None:
    digest = "sha256:" + "1" * 64
    sig = {"tag": "sha256-" + "1" * 64 + ".sig", "digest": "sha256:" + "3" * 64, "kind": "sig"}
    att = {"tag": "sha256-" + "1" * 64 + ".att", "digest": "sha256:" + "4" * 64, "kind": "att"}
    a = _lock(tmp_path / "a.json", {**_entry("x.example/a:1", digest), "referrers": [sig]})
    b = _lock(tmp_path / "b.json", {**_entry("x.example/a:1", digest), "referrers": [att]})
    out = tmp_path / "out.json"
    res = run_kferry("lock", "merge", str(a), str(b), "-o", str(out))
    assert res.code == 0, res.err
    (entry,) = json.loads(out.read_text())["images"]
    assert sorted(r["kind"] for r in entry["referrers"]) == ["att", "sig"]


def test_lock_with_a_malformed_referrer_is_refused(tmp_path: Path) -> None:
    bad = {**_entry("x.example/a:1", "sha256:" + "1" * 64), "referrers": [{"tag": "t"}]}
    a = _lock(tmp_path / "a.json", bad)
    res = run_kferry("lock", "merge", str(a), "-o", str(tmp_path / "out.json"))
    assert res.code == 2 and "images[0].referrers[0]" in res.err


@pytest.fixture
def workload(source_registry: Registry) -> list[PushedImage]:
    """Twelve images sharing a base layer (dedupe inside and across shards)."""
    base = random_blob(200_000, "shard-base")
    return [
        push_image(source_registry, f"kf/app{i}", tag="v1", shared_layers=[base], layers=(4000,))
        for i in range(12)
    ]


def _mirror(
    source: Registry, target: Registry, images: list[PushedImage], lock: Path, *extra: str
) -> dict[str, Any]:
    res = run_kferry(
        "mirror", *[source.ref(i.repo, "v1") for i in images], "--plain-http", source.host,
        "--to", f"{target.host}/proj", "--ca-file", str(target.ca_file),
        "--username", str(target.username), "--password-stdin",
        "-o", "json", "--lock", str(lock), *extra,
        stdin=f"{target.password}\n".encode(),
    )  # fmt: skip
    assert res.code == 0, res.err + res.out
    summary: dict[str, Any] = json.loads(res.out)
    return summary


@pytest.mark.registry
def test_three_shards_together_are_the_unsharded_mirror(
    source_registry: Registry,
    target_registry: Registry,
    workload: list[PushedImage],
    tmp_path: Path,
) -> None:
    locks, counts = [], []
    for i in range(3):
        lock = tmp_path / f"shard{i}.json"
        summary = _mirror(
            source_registry, target_registry, workload, lock, "--shard", f"{i}/3", "--no-referrers"
        )
        counts.append(summary["copied"])
        locks.append(lock)
    assert sum(counts) == len(workload) and all(counts)
    sources = [{e["source"] for e in json.loads(p.read_text())["images"]} for p in locks]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])

    merged = tmp_path / "merged.json"
    res = run_kferry("lock", "merge", *map(str, locks), "-o", str(merged))
    assert res.code == 0, res.err

    # The whole list afterwards finds every image there already, and records the same lock.
    whole = tmp_path / "whole.json"
    summary = _mirror(source_registry, target_registry, workload, whole, "--no-referrers")
    assert summary["copied"] == 0 and summary["skipped"] == len(workload)
    assert json.loads(merged.read_text()) == json.loads(whole.read_text())


@pytest.mark.registry
def test_shard_of_bundle_save_holds_only_its_images(
    source_registry: Registry, workload: list[PushedImage], tmp_path: Path
) -> None:
    names = []
    for i in range(2):
        out = tmp_path / f"part{i}"
        res = run_kferry(
            "bundle", "save", *[source_registry.ref(w.repo, "v1") for w in workload],
            "--plain-http", source_registry.host, "-o", str(out), "--json", "--shard", f"{i}/2",
        )  # fmt: skip
        assert res.code == 0, res.err
        index = json.loads((out / "index.json").read_text())
        names.append({m["annotations"][REF_NAME] for m in index["manifests"]})
    assert not names[0] & names[1]
    assert len(names[0] | names[1]) == len(workload)
