"""The engines in process, with real stores and no server: the copier between OCI layouts
(:class:`LayoutReader` as the source, :class:`LayoutWriter` as the sink, a directory, a
``.tar`` or a ``.tar.zst``), the layout writer's resume and re-hash, ``verify_bundle``, and
the rewrite engine (``rewrite_manifests``) on a small manifest.

The source layouts are written by hand (:mod:`tests.support.ocilayout`), not by kferry, so
the bytes kferry writes are checked against an independent oracle. These keep the fast subset
(``-m "not registry and not cluster and not node"``) covering what the registry and
subprocess tests cover end to end.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml

from kferry.load import Source
from kferry.name import parse
from kferry.pipeline import rewrite_manifests
from kferry.plan import Planned, Target
from kferry.transfer.copy import Copier, ImageResult
from kferry.transfer.layout.read import LayoutReader
from kferry.transfer.layout.verify import verify_bundle
from kferry.transfer.layout.write import LayoutWriter
from tests.support import ocilayout
from tests.support.ocilayout import LayoutImage, blob_digests, blob_path

SINGLE = "docker.io/library/busybox:1.36"
MULTI = "ghcr.io/kubeflow/notebook:v1"


def source_layout(root: Path) -> dict[str, LayoutImage]:
    """Two images sharing a layer: one single-platform, one index over two platforms."""
    shared = b"shared layer " * 1000
    single = ocilayout.image(root, [shared, b"busybox only"])
    amd = ocilayout.image(root, [shared, b"amd64 layer"], arch="amd64")
    arm = ocilayout.image(root, [shared, b"arm64 layer"], arch="arm64")
    multi = ocilayout.index(root, {"linux/amd64": amd, "linux/arm64": arm})
    named = {SINGLE: single, MULTI: multi}
    ocilayout.finish(root, named)
    return named


def copy(src: Path, out: Path, refs: list[str], **options: object) -> list[ImageResult]:
    planned = [Planned(parse(r), parse(r)) for r in refs]
    with LayoutReader(src) as reader, LayoutWriter(out) as writer:
        results = Copier(reader, writer, jobs=4, retries=0, **options).run(planned)  # type: ignore[arg-type]
        writer.finish()
    return results


def by_name(results: list[ImageResult]) -> dict[str, ImageResult]:
    return {r.source.canonical: r for r in results}


def test_layout_to_layout_copy_keeps_every_digest_and_byte(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    named = source_layout(src)
    results = by_name(copy(src, out, [SINGLE, MULTI]))
    for name, img in named.items():
        assert results[name].status == "copied", results[name].error
        assert results[name].digest == img.digest
    # every blob once, byte for byte; nothing else
    assert blob_digests(out) == set().union(*(i.blobs for i in named.values()))
    for digest in blob_digests(out):
        assert blob_path(out, digest).read_bytes() == blob_path(src, digest).read_bytes()
    index = json.loads((out / "index.json").read_text())
    names = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    assert {n: m["digest"] for n, m in names.items()} == {n: i.digest for n, i in named.items()}
    assert names[MULTI]["annotations"]["io.containerd.image.name"] == MULTI
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    report = verify_bundle(out)
    assert report.damage == []
    assert report.blobs == len(blob_digests(out))


def test_rerun_skips_complete_images_and_sends_nothing(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    source_layout(src)
    copy(src, out, [SINGLE, MULTI])
    again = copy(src, out, [SINGLE, MULTI])
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert sum(r.bytes_sent for r in again) == 0


def test_blob_damaged_in_the_output_is_found_and_copied_again(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    named = source_layout(src)
    copy(src, out, [SINGLE, MULTI])
    layer = json.loads(named[SINGLE].raw)["layers"][1]["digest"]
    blob_path(out, layer).write_bytes(b"busybox onlY")  # same size, other bytes
    report = verify_bundle(out)
    assert any(layer.removeprefix("sha256:") in d for d in report.damage), report.damage
    results = by_name(copy(src, out, [SINGLE, MULTI]))
    assert results[SINGLE].status == "copied"  # re-hashed: the damaged image is copied again
    assert results[MULTI].status == "skipped"
    assert blob_path(out, layer).read_bytes() == b"busybox only"
    assert verify_bundle(out).damage == []


def test_damaged_source_blob_fails_that_image_only(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    named = source_layout(src)
    layer = json.loads(named[SINGLE].raw)["layers"][1]["digest"]
    blob_path(src, layer).write_bytes(b"tampered!!!!")
    results = by_name(copy(src, out, [SINGLE, MULTI]))
    assert results[SINGLE].status == "failed"
    assert layer in results[SINGLE].error
    assert results[MULTI].status == "copied"
    assert not blob_path(out, layer).exists()  # never stored under a digest it does not have
    assert verify_bundle(out).damage == []


def test_platform_filter_writes_a_new_index_and_says_so(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    named = source_layout(src)
    (result,) = copy(src, out, [MULTI], platforms=["linux/amd64"])
    assert result.status == "copied"
    assert result.source_digest == named[MULTI].digest
    assert result.digest != named[MULTI].digest
    assert any("filtered to linux/amd64" in n for n in result.notes)
    kept = json.loads(blob_path(out, result.digest).read_bytes())["manifests"]
    assert [m["platform"]["architecture"] for m in kept] == ["amd64"]
    assert not any(blob_path(out, d).read_bytes() == b"arm64 layer" for d in blob_digests(out))


@pytest.mark.parametrize("suffix", [".tar", ".tar.zst"])
def test_archive_bundles_read_back_the_same(tmp_path: Path, suffix: str) -> None:
    src, out = tmp_path / "src", tmp_path / f"bundle{suffix}"
    named = source_layout(src)
    results = copy(src, out, [SINGLE, MULTI])
    assert {r.status for r in results} == {"copied"}
    assert not out.with_name(out.name + ".kferry-partial").exists()  # staging removed
    if suffix == ".tar":
        with tarfile.open(out) as tar:
            assert tar.getnames()[:2] == ["oci-layout", "index.json"]  # streamable
    assert verify_bundle(out).damage == []
    # and back out of the archive into a directory: same digests
    back = by_name(copy(out, tmp_path / "back", [SINGLE, MULTI]))
    assert {n: r.digest for n, r in back.items()} == {n: i.digest for n, i in named.items()}
    with LayoutReader(out) as reader:
        assert reader.get_manifest(parse(MULTI)).raw == named[MULTI].raw


def test_interrupted_write_leaves_no_blob_under_a_wrong_digest(tmp_path: Path) -> None:
    """A ``.partial`` left by a killed run is not a blob: the next run writes the real one."""
    src, out = tmp_path / "src", tmp_path / "out"
    named = source_layout(src)
    layer = json.loads(named[SINGLE].raw)["layers"][0]["digest"]
    partial = blob_path(out, layer).with_name(blob_path(out, layer).name + ".partial")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"shared la")  # a killed run's half blob
    results = copy(src, out, [SINGLE])
    assert results[0].status == "copied"
    assert not partial.exists()
    assert blob_path(out, layer).read_bytes() == blob_path(src, layer).read_bytes()


MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: kubeflow
spec:
  template:
    spec:
      containers:
      - name: web
        image: docker.io/library/busybox:1.36   # keep this comment
        args: ["docker.io/library/busybox:1.36"]
      initContainers:
      - name: init
        image: ghcr.io/kubeflow/notebook@sha256:{digest}
"""


@pytest.mark.parametrize(
    ("layout", "busybox", "notebook"),
    [
        ("keep", "docker.io/library/busybox:1.36", "ghcr.io/kubeflow/notebook"),
        ("drop-host", "library/busybox:1.36", "kubeflow/notebook"),
    ],
)
def test_rewrite_engine_touches_only_image_fields(layout: str, busybox: str, notebook: str) -> None:
    digest = "a" * 64
    text = MANIFEST.format(digest=digest)
    out = rewrite_manifests(
        [Source("deploy.yaml", text)], Target.parse("harbor.local:8443/kf", layout)
    )
    to = "harbor.local:8443/kf"
    expected = text.replace(
        "image: docker.io/library/busybox:1.36", f"image: {to}/{busybox}"
    ).replace(
        f"image: ghcr.io/kubeflow/notebook@sha256:{digest}",
        f"image: {to}/{notebook}@sha256:{digest}",
    )
    assert out.text == expected  # the comment, the args and the layout stay as written
    (doc,) = yaml.safe_load_all(out.text)
    assert doc["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "docker.io/library/busybox:1.36"
    ]
    assert out.references == 2
