"""Size before download (`plan --size`, `bundle save --dry-run`) and delta bundles
(`bundle save --since OLD`, `bundle load` checking the base first), on real registries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kferry
from tests.support.images import (
    PushedImage,
    blob_exists,
    manifest_exists,
    push_blob,
    push_image,
    push_multiarch,
    random_blob,
)
from tests.support.registry import Registry, write_docker_config
from tests.support.skopeo import skopeo_raw_digest

pytestmark = pytest.mark.registry

BASE = random_blob(300_000, "delta-base")
RUNTIME = random_blob(200_000, "delta-runtime")


def workload(src: Registry) -> list[PushedImage]:
    """Shared layers, docker and OCI media, a digest-only image, a multi-arch index."""
    return [
        push_image(src, "kf/a", tag="1", layers=[100_000], shared_layers=[BASE], seed="a1"),
        push_image(
            src, "kf/deep/b", tag=None, layers=[50_000], shared_layers=[BASE, RUNTIME], seed="b1"
        ),
        push_image(
            src,
            "kf/c",
            tag="1",
            layers=[70_000],
            shared_layers=[RUNTIME],
            media="docker",
            seed="c1",
        ),
        push_multiarch(
            src, "kf/multi", tag="2", layers=[random_blob(30_000, "multi")], shared_layers=[BASE]
        ),
    ]


def refs(images: list[PushedImage]) -> list[str]:
    return [i.tag_ref if i.tag else i.ref for i in images]


def blob_bytes(bundle: Path) -> int:
    return sum(p.stat().st_size for p in (bundle / "blobs" / "sha256").iterdir())


def kf(
    *args: str, stdin: bytes | None = None, code: int = 0, env: dict[str, str] | None = None
) -> str:
    res = run_kferry(*args, stdin=stdin, env=env)
    assert res.code == code, res.out + res.err
    return res.out + (res.err if code else "")


def dry_run(
    src: Registry, images: list[str], *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    out = kf(
        "bundle", "save", *images, "--plain-http", src.host, "--dry-run", "--json",
        *extra, env=env,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(out)
    return report


def save(
    src: Registry, images: list[str], out: Path, *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    res = kf(
        "bundle", "save", *images, "--plain-http", src.host, "-o", str(out), "--json", *extra,
        env=env,
    )  # fmt: skip
    summary: dict[str, Any] = json.loads(res)
    return summary


def target_args(target: Registry, project: str = "air") -> list[str]:
    return ["--to", f"{target.host}/{project}", *target.login_args()]


def load(bundle: Path, target: Registry, tmp: Path, code: int = 0) -> str:
    return kf(
        "bundle", "load", str(bundle), *target_args(target), "-o", "json",
        "--lock", str(tmp / f"lock-{target.host.replace(':', '_')}.json"),
        stdin=f"{target.password}\n".encode(), code=code,
    )  # fmt: skip


@pytest.mark.parametrize("platform", [None, "linux/amd64"])
def test_size_estimate_equals_bytes_the_bundle_writes(
    source_registry: Registry, target_registry: Registry, tmp_path: Path, platform: str | None
) -> None:
    images = refs(workload(source_registry))
    extra = ["--platform", platform] if platform else []
    report = dry_run(source_registry, images, *extra, "-o", str(tmp_path / "unused"))
    assert not (tmp_path / "unused").exists()  # a dry run writes nothing
    assert set(report) == {"images", "total_bytes", "present_bytes", "to_carry_bytes"}
    assert [i["image"] for i in report["images"]] == [f"{r}" for r in images]
    assert all(set(i) == {"image", "bytes", "present_bytes"} for i in report["images"])
    # a shared blob counts once in the totals, once per image in the rows
    assert report["total_bytes"] < sum(i["bytes"] for i in report["images"])
    assert report["present_bytes"] == 0 and report["to_carry_bytes"] == report["total_bytes"]

    out = tmp_path / "bundle"
    save(source_registry, images, out, *extra)
    assert blob_bytes(out) == report["total_bytes"]  # exactly, not about

    plan_out = kf(
        "plan", "--size", *images, "--plain-http", source_registry.host, *extra,
        *target_args(target_registry), "-o", "json",
        stdin=f"{target_registry.password}\n".encode(),
    )  # fmt: skip
    assert json.loads(plan_out) == report  # an empty target holds nothing


def test_plan_size_counts_what_the_target_holds(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    images = refs(workload(source_registry))
    kf(
        "mirror", images[0], "--plain-http", source_registry.host, *target_args(target_registry),
        "--lock", str(tmp_path / "lock.json"), stdin=f"{target_registry.password}\n".encode(),
    )  # fmt: skip
    report = json.loads(
        kf(
            "plan", "--size", *images, "--plain-http", source_registry.host,
            *target_args(target_registry), "-o", "json",
            stdin=f"{target_registry.password}\n".encode(),
        )
    )  # fmt: skip
    first = report["images"][0]
    assert first["present_bytes"] == first["bytes"] > 0  # mirrored: held whole
    # the others are in other repositories, but their copy of the shared base layer is
    # mounted from kf/a's: not carried
    others = report["images"][1:]
    assert [i["present_bytes"] for i in others] == [len(BASE), 0, len(BASE)]
    assert report["present_bytes"] == first["bytes"]
    assert report["to_carry_bytes"] == report["total_bytes"] - first["bytes"]
    table = kf(
        "plan", "--size", *images, "--plain-http", source_registry.host,
        *target_args(target_registry), stdin=f"{target_registry.password}\n".encode(),
    )  # fmt: skip
    assert f"({report['to_carry_bytes']} bytes)" in table


def upgrade(src: Registry) -> list[PushedImage]:
    """The same four images after an upgrade where one in five changed (b: a new layer on the
    same bases, under a new tag) and one image is new (d)."""
    old = workload(src)
    b2 = push_image(
        src, "kf/deep/b", tag="2", layers=[60_000], shared_layers=[BASE, RUNTIME], seed="b2"
    )
    d = push_image(src, "kf/d", tag="1", layers=[40_000], shared_layers=[BASE], seed="d1")
    return [old[0], b2, old[2], old[3], d]


def raw_digests(target: Registry, images: list[PushedImage]) -> dict[str, str]:
    """What ``skopeo inspect --raw`` reads for each image (and each child of an index)."""
    out = {}
    for img in images:
        for m in img.manifests():
            ident = f":{img.tag}" if img.tag and m is img else f"@{m.digest}"
            ref = f"{target.host}/{planned_repo(img.tag_ref if img.tag else img.ref, target)}"
            out[f"{img.repo}{ident}"] = skopeo_raw_digest(ref + ident, registry=target)
    return out


@pytest.mark.parametrize("since_kind", ["bundle", "lock", "registry"])
def test_delta_bundle_carries_only_what_the_far_side_lacks(
    source_registry: Registry,
    registry_factory: Any,
    tmp_path: Path,
    since_kind: str,
) -> None:
    far = registry_factory(tls=True, auth="htpasswd", name="far")
    full_target = registry_factory(tls=True, auth="htpasswd", name="full")
    old_images = workload(source_registry)
    old = tmp_path / "old.tar"
    save(source_registry, refs(old_images), old)
    load(old, far, tmp_path)
    new_images = upgrade(source_registry)
    new = refs(new_images)

    since = str(old) if since_kind == "bundle" else str(tmp_path / "old-lock.json")
    extra = ["--since", since]
    env = None
    if since_kind == "lock":  # what loading the old bundle recorded
        (tmp_path / "old-lock.json").write_text(
            (tmp_path / f"lock-{far.host.replace(':', '_')}.json").read_text()
        )
    if since_kind == "registry":  # the far registry itself, reached with a docker config
        extra = ["--since", f"{far.host}/air", "--ca-file", str(far.ca_file)]
        env = {"DOCKER_CONFIG": str(write_docker_config(tmp_path / "docker", far))}
    estimate = dry_run(source_registry, new, *extra, env=env)
    delta = tmp_path / "delta"
    summary = save(source_registry, new, delta, *extra, env=env)
    assert summary["skipped"] == 3 and summary["copied"] == 2  # a, c, multi: held whole
    assert blob_bytes(delta) == estimate["to_carry_bytes"] < estimate["total_bytes"]
    index = json.loads((delta / "index.json").read_text())
    names = sorted(
        m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]
    )
    assert names == sorted([new[1], new[4]])
    base = json.loads((delta / "kferry-base.json").read_text())
    assert {i["image"] for i in base["images"]} == {new[0], new[2], new[3]}
    base_blobs = {b["digest"] for b in base["blobs"]}
    assert {BASE_DIGEST, RUNTIME_DIGEST} <= base_blobs
    for d in base_blobs:
        assert not (delta / "blobs" / "sha256" / d.partition(":")[2]).exists()
    assert kf("bundle", "verify", str(delta))  # the base counts as present

    # full bundle into one registry, old + delta into another: the same bytes
    full = tmp_path / "full"
    save(source_registry, new, full)
    load(full, full_target, tmp_path)
    load(delta, far, tmp_path)
    assert raw_digests(far, new_images) == raw_digests(full_target, new_images)


BASE_DIGEST = f"sha256:{__import__('hashlib').sha256(BASE).hexdigest()}"
RUNTIME_DIGEST = f"sha256:{__import__('hashlib').sha256(RUNTIME).hexdigest()}"


def test_delta_refused_before_writing_when_a_base_blob_is_missing(
    source_registry: Registry, registry_factory: Any, tmp_path: Path
) -> None:
    far = registry_factory(tls=True, auth="htpasswd", name="far")
    old = tmp_path / "old"
    save(source_registry, refs(workload(source_registry)), old)
    load(old, far, tmp_path)
    new_images = upgrade(source_registry)
    delta = tmp_path / "delta.tar.zst"
    save(source_registry, refs(new_images), delta, "--since", str(old))
    # the far side lost one base blob (deleted from the repository the base says holds it)
    home = next(
        b["image"] for b in json.loads(_base_of(delta))["blobs"] if b["digest"] == RUNTIME_DIGEST
    )
    repo = planned_repo(home, far)
    with far.client() as c:
        assert c.delete(f"/v2/{repo}/blobs/{RUNTIME_DIGEST}").status_code == 202
    assert kf("bundle", "verify", str(delta))  # a streamed .tar.zst delta verifies too
    err = load(delta, far, tmp_path, code=1)
    assert "delta bundle" in err and "nothing was written" in err
    assert f"blob {RUNTIME_DIGEST} in {far.host}/{repo}" in err
    assert "lacks 1 of its base" in err  # that blob alone
    b2, d = new_images[1], new_images[4]
    with far.client() as c:
        for img in (b2, d):
            assert not manifest_exists(c, planned_repo(img.tag_ref, far), str(img.tag))
        for b in d.blobs:
            assert not blob_exists(c, planned_repo(d.tag_ref, far), b.digest)
    # once the blob is back, the same delta loads
    with far.client() as c:
        push_blob(c, repo, RUNTIME, skip_existing=False)
    load(delta, far, tmp_path)
    with far.client() as c:
        assert manifest_exists(c, planned_repo(d.tag_ref, far), "1")


def planned_repo(image: str, target: Registry) -> str:
    """The repository ``kferry plan`` gives ``image`` under ``target``/air."""
    planned = json.loads(kf("plan", image, "--to", f"{target.host}/air", "-o", "json"))
    where: str = planned[0]["target"]
    return where.split("/", 1)[1].split("@")[0].rsplit(":", 1)[0]


def _base_of(bundle: Path) -> str:
    import tarfile

    import zstandard

    with (
        open(bundle, "rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for m in tar:
            if m.name == "kferry-base.json":
                f = tar.extractfile(m)
                assert f is not None
                return f.read().decode()
    raise AssertionError("no kferry-base.json")


def test_delta_into_an_earlier_full_output_leaves_the_held_images_out(
    source_registry: Registry, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    save(source_registry, refs(workload(source_registry)), old)
    new = refs(upgrade(source_registry))
    out = tmp_path / "reused"
    save(source_registry, new, out)  # a full save first, then a delta into the same OUT
    save(source_registry, new, out, "--since", str(old))
    index = json.loads((out / "index.json").read_text())
    names = sorted(
        m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]
    )
    assert names == sorted([new[1], new[4]])
