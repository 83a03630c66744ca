"""Real Kubeflow renders: kferry finds exactly the ground-truth images, nothing more.

The renders (examples/kubeflow/*.yaml.gz) and truth files (tests/data/kubeflow/truth-*.tsv)
are copies of the project corpus: image, group (a pod spec / b inside strings / c composed or
compiled default), object, path, note. No truth file needed correcting.
"""

from __future__ import annotations

import csv
import json
from functools import cache
from typing import Any

import pytest

from kferry.name import canonical
from tests.conftest import DATA, RELEASES, release_path, run_kferry


@cache
def truth(release: str) -> list[dict[str, str]]:
    with open(DATA / "kubeflow" / f"truth-{release}.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@cache
def kferry_json(release: str) -> list[dict[str, Any]]:
    res = run_kferry("images", "-o", "json", str(release_path(release)))
    assert res.code == 0, res.err
    assert res.err == "", res.err
    data: list[dict[str, Any]] = json.loads(res.out)
    return data


def truth_object(row: dict[str, str]) -> str:
    kind, ns, name = row["object"].removeprefix("compiled-default:").split("/")
    return f"{kind}/{'' if ns == '-' else ns}/{name}"


@pytest.mark.parametrize("release", RELEASES)
def test_same_images_as_the_truth(release: str) -> None:
    want = {canonical(r["image_ref"]) for r in truth(release)}
    got = {str(i["image"]) for i in kferry_json(release)}
    assert sorted(want - got) == [], "missing"
    assert sorted(got - want) == [], "extra"


@pytest.mark.parametrize("release", RELEASES)
def test_every_truth_location_is_reported(release: str) -> None:
    by_image = {str(i["image"]): i for i in kferry_json(release)}
    for row in truth(release):
        img = by_image[canonical(row["image_ref"])]
        locations = img["locations"]
        assert isinstance(locations, list)
        objects = {loc["object"] for loc in locations}
        assert truth_object(row) in objects, row
        if row["group"] in ("a", "b"):  # field and string paths are spelled the same way
            paths = {loc["path"] for loc in locations if loc["object"] == truth_object(row)}
            assert row["path"] in paths, row


@pytest.mark.parametrize("release", RELEASES)
def test_optional_images_match_the_truth(release: str) -> None:
    rows: dict[str, list[dict[str, str]]] = {}
    for row in truth(release):
        rows.setdefault(canonical(row["image_ref"]), []).append(row)
    want = {
        img for img, rs in rows.items() if all((r["note"] or "").startswith("optional") for r in rs)
    }
    got = {str(i["image"]) for i in kferry_json(release) if i["optional"]}
    assert got == want


@pytest.mark.parametrize("release", RELEASES)
def test_json_shape_is_the_contract(release: str) -> None:
    for img in kferry_json(release):
        assert list(img) == ["image", "written", "optional", "locations"]
        assert isinstance(img["optional"], bool)
        assert img["written"] and all(isinstance(w, str) for w in img["written"])
        assert canonical(str(img["image"])) == img["image"]
        for loc in img["locations"]:
            assert list(loc) == ["object", "path", "how"]
            assert loc["how"] in ("field", "string", "composed", "default")
            assert loc["object"].count("/") >= 2


def test_cluster_scoped_objects_have_an_empty_namespace() -> None:
    objects = {loc["object"] for i in kferry_json("v1.9.1") for loc in i["locations"]}
    assert "ClusterServingRuntime//kserve-sklearnserver" in objects


def test_list_output_is_one_canonical_reference_per_line() -> None:
    res = run_kferry("images", "-o", "list", str(release_path("v1.4.1")))
    assert res.code == 0
    lines = res.out.splitlines()
    assert lines == sorted({canonical(r["image_ref"]) for r in truth("v1.4.1")})


def test_table_and_why() -> None:
    res = run_kferry("images", str(release_path("v1.9.1")))
    assert res.code == 0
    head = res.out.splitlines()[0].split()
    assert head == ["IMAGE", "FOUND", "IN", "OPTIONAL"]
    assert any(
        line.startswith("docker.io/library/busybox:1.28") and line.rstrip().endswith("yes")
        for line in res.out.splitlines()
    )
    assert "94 images (2 optional)" in res.out
    why = run_kferry("images", "--why", str(release_path("v1.9.1")))
    assert "composed ConfigMap/istio-system/istio-sidecar-injector  data.values|json:" in why.out
    assert "default  Deployment/kubeflow/training-operator" in why.out
