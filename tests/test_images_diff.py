"""``kferry images --diff OLD NEW``: what an upgrade adds, removes and changes.

The concrete images below were read from the shipped renders (``kferry images -o list``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import release_path, run_kferry

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  containers:
  - name: c
    image: busybox:1.36
  - name: d
    image: quay.io/x/tool:v1
"""


def diff_json(old: str, new: str, *extra: str) -> dict[str, Any]:
    res = run_kferry("images", "--diff", old, new, "-o", "json", *extra)
    assert res.code == 0, res.err
    data: dict[str, Any] = json.loads(res.out)
    return data


@pytest.fixture(scope="module")
def v14_to_v19() -> dict[str, Any]:
    return diff_json(str(release_path("v1.4.1")), str(release_path("v1.9.1")))


@pytest.fixture(scope="module")
def v19_to_2603() -> dict[str, Any]:
    return diff_json(str(release_path("v1.9.1")), str(release_path("26.03")))


def changes(data: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["repository"]: (c["old"], c["new"]) for c in data["changed"]}


def test_v141_to_v191_istio_is_a_change_not_an_addition(v14_to_v19: dict[str, Any]) -> None:
    ch = changes(v14_to_v19)
    assert ch["docker.io/istio/proxyv2"] == (
        "docker.io/istio/proxyv2:1.9.6",
        "docker.io/istio/proxyv2:1.22.1",
    )
    assert ch["docker.io/istio/pilot"][1] == "docker.io/istio/pilot:1.22.1"
    assert ch["gcr.io/ml-pipeline/api-server"] == (
        "gcr.io/ml-pipeline/api-server:1.7.0",
        "gcr.io/ml-pipeline/api-server:2.3.0",
    )
    assert ch["quay.io/jetstack/cert-manager-controller"][1].endswith(":v1.14.5")
    # a digest-pinned image whose digest moved on is a change too
    assert "gcr.io/knative-releases/knative.dev/serving/cmd/activator" in ch
    added = {a["image"] for a in v14_to_v19["added"]}
    removed = {r["image"] for r in v14_to_v19["removed"]}
    assert not any("istio/proxyv2" in i for i in added | removed)
    assert "ghcr.io/dexidp/dex:v2.39.1" in added  # the registry moved: a new repository
    assert "quay.io/dexidp/dex:v2.24.0" in removed
    assert "docker.io/kfserving/kfserving-controller:v0.6.1" in removed
    assert "docker.io/kserve/kserve-controller:v0.13.1" in added
    # where each is used: the new side's locations, and the old side's for a change
    proxy = next(c for c in v14_to_v19["changed"] if c["repository"] == "docker.io/istio/proxyv2")
    objects = {loc["object"] for loc in proxy["locations"]}
    assert "Deployment/istio-system/istio-ingressgateway" in objects
    assert proxy["old_locations"]
    dex = next(a for a in v14_to_v19["added"] if a["image"] == "ghcr.io/dexidp/dex:v2.39.1")
    assert [loc["object"] for loc in dex["locations"]] == ["Deployment/auth/dex"]
    assert v14_to_v19["old"] == {
        "input": str(release_path("v1.4.1")),
        "kind": "render",
        "images": 102,
    }
    total_old = len(v14_to_v19["removed"]) + len(v14_to_v19["changed"]) + v14_to_v19["unchanged"]
    assert total_old == v14_to_v19["old"]["images"]
    total_new = len(v14_to_v19["added"]) + len(v14_to_v19["changed"]) + v14_to_v19["unchanged"]
    assert total_new == v14_to_v19["new"]["images"]


def test_v191_to_2603(v19_to_2603: dict[str, Any]) -> None:
    ch = changes(v19_to_2603)
    assert ch["docker.io/kserve/kserve-controller"] == (
        "docker.io/kserve/kserve-controller:v0.13.1",
        "docker.io/kserve/kserve-controller:v0.16.0",
    )
    assert ch["quay.io/oauth2-proxy/oauth2-proxy"][1].endswith(":v7.14.3")
    # two mysql references in 26.03: the one in the same Deployment is the change
    assert ch["docker.io/library/mysql"] == (
        "docker.io/library/mysql:8.0.29",
        "docker.io/library/mysql:8.0",
    )
    added = {a["image"] for a in v19_to_2603["added"]}
    removed = {r["image"] for r in v19_to_2603["removed"]}
    assert "docker.io/library/mysql:8.4" in added
    # istio moved from docker.io/istio to gcr.io/istio-release: another repository
    assert {"gcr.io/istio-release/proxyv2:1.28.0", "gcr.io/istio-release/proxyv2:1.29.0"} <= added
    assert "docker.io/istio/proxyv2:1.22.1" in removed
    assert "ghcr.io/kubeflow/trainer/trainer-controller-manager:v2.1.0" in added
    assert "docker.io/kubeflow/training-operator:v1-04f9f13" in removed


def test_lock_file_as_old(tmp_path: Path, v19_to_2603: dict[str, Any]) -> None:
    """A lock file of everything v1.9.1 needs diffs against 26.03 like the render does,
    but says it has no locations."""
    listed = run_kferry("images", "-o", "list", str(release_path("v1.9.1")))
    assert listed.code == 0, listed.err
    lock = tmp_path / "kferry.lock.json"
    entries = [
        {"source": ref, "target": "reg.local/" + ref, "digest": "sha256:" + "a" * 64}
        for ref in listed.out.split()
    ]
    lock.write_text(json.dumps({"version": 1, "images": entries}))
    got = diff_json(str(lock), str(release_path("26.03")))
    assert got["old"] == {"input": str(lock), "kind": "lock", "images": len(entries)}
    assert changes(got) == changes(v19_to_2603)
    for group in ("added", "removed"):
        assert [x["image"] for x in got[group]] == [x["image"] for x in v19_to_2603[group]]
    assert all(r["locations"] is None for r in got["removed"])
    assert all(c["old_locations"] is None and c["locations"] for c in got["changed"])
    table = run_kferry("images", "--diff", str(lock), str(release_path("26.03")))
    assert table.code == 0, table.err
    assert "(lock file: no locations)" in table.out
    assert f"{lock} is a lock file" in table.out


def test_identical_inputs_and_exit_code(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(POD)
    b = tmp_path / "b.yaml"
    b.write_text(POD.replace("busybox:1.36", "docker.io/library/busybox:1.36"))  # same image
    got = diff_json(str(a), str(b))
    assert got["added"] == got["removed"] == got["changed"] == []
    assert got["unchanged"] == 2
    res = run_kferry("images", "--diff", str(a), str(b), "--exit-code")
    assert res.code == 0 and "no differences" in res.out
    assert run_kferry("images", "--diff", str(a), "-", stdin=POD.encode()).code == 0


def test_differences_list_and_exit_code(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(POD)
    b = tmp_path / "b.yaml"
    b.write_text(POD.replace("busybox:1.36", "busybox:1.37").replace("quay.io/x/tool", "q.io/y"))
    got = diff_json(str(a), str(b))
    assert changes(got) == {
        "docker.io/library/busybox": (
            "docker.io/library/busybox:1.36",
            "docker.io/library/busybox:1.37",
        )
    }
    assert [x["image"] for x in got["added"]] == ["q.io/y:v1"]
    assert [x["image"] for x in got["removed"]] == ["quay.io/x/tool:v1"]
    res = run_kferry("images", "--diff", str(a), str(b), "-o", "list")
    assert res.code == 0
    assert res.out == "docker.io/library/busybox:1.37\nq.io/y:v1\n"  # what NEW needs to carry
    assert run_kferry("images", "--diff", str(a), str(b)).code == 0  # no flag: always 0
    res = run_kferry("images", "--diff", str(a), str(b), "--exit-code")
    assert res.code == 1
    assert "ADDED (1)" in res.out and "CHANGED (1)" in res.out
    assert "docker.io/library/busybox  1.36 -> 1.37  in Pod/ns/p" in res.out


def test_a_change_pairs_references_named_in_the_same_object(tmp_path: Path) -> None:
    """Version order alone would pair tool:v1 with tool:v0.9; the object that named v1 now
    names v2, so that is the change, and v0.9 (in another Pod) is an addition."""
    a = tmp_path / "a.yaml"
    a.write_text(POD)
    other = POD.replace("name: p,", "name: q,").replace("quay.io/x/tool:v1", "quay.io/x/tool:v0.9")
    b = tmp_path / "b.yaml"
    b.write_text(POD.replace("quay.io/x/tool:v1", "quay.io/x/tool:v2") + "---\n" + other)
    got = diff_json(str(a), str(b))
    assert changes(got)["quay.io/x/tool"] == ("quay.io/x/tool:v1", "quay.io/x/tool:v2")
    assert [x["image"] for x in got["added"]] == ["quay.io/x/tool:v0.9"]
    assert got["removed"] == []


def test_kustomize_directory_as_new(tmp_path: Path) -> None:
    if not (shutil.which("kustomize") or shutil.which("kubectl")):
        pytest.fail("kustomize or kubectl must be on PATH (.ci/run builds kustomize)")
    (tmp_path / "old.yaml").write_text(POD)
    d = tmp_path / "overlay"
    d.mkdir()
    (d / "pod.yaml").write_text(POD)
    (d / "kustomization.yaml").write_text(
        "resources: [pod.yaml]\nimages:\n- name: busybox\n  newTag: '1.37'\n"
    )
    got = diff_json(str(tmp_path / "old.yaml"), str(d))
    assert changes(got) == {
        "docker.io/library/busybox": (
            "docker.io/library/busybox:1.36",
            "docker.io/library/busybox:1.37",
        )
    }
    assert got["new"]["input"] == str(d) and got["new"]["kind"] == "render"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ('{"version": 1, "images": [{"source": "a:1"}]}', "images[0] lacks source"),
        (
            '{"version": 1, "images": [{"source": "A B", "target": "x", "digest": "y"}]}',
            "images[0].source",
        ),
        ("kind: [unclosed\n", ""),
    ],
)
def test_bad_input_names_the_file(tmp_path: Path, content: str | None, message: str) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(POD)
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    res = run_kferry("images", "--diff", str(good), str(bad))
    assert res.code == 2, res.err
    assert str(bad) in res.err and message in res.err
    assert "Traceback" not in res.err
    assert res.err.count("\n") == 1


def test_diff_takes_exactly_two_inputs(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(POD)
    assert run_kferry("images", "--diff", str(a), str(a), str(a)).code == 2
    assert run_kferry("images", "--diff", "-", "-").code == 2
    assert run_kferry("images", "--exit-code", str(a)).code == 2


def test_warnings_name_their_input(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(POD)
    b = tmp_path / "b.yaml"
    b.write_text(POD.replace("quay.io/x/tool:v1", "'Quay.io/X:'"))
    res = run_kferry("images", "--diff", str(a), str(b), "-o", "json")
    assert res.code == 0, res.err
    assert f"kferry: warning: {b}: Pod/ns/p spec.containers[name=d].image" in res.err
    assert [x["image"] for x in json.loads(res.out)["removed"]] == ["quay.io/x/tool:v1"]


def test_lock_file_on_stdin_matches_its_render(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(POD)
    entries = [
        {"source": s, "target": "reg.local/" + s, "digest": "sha256:" + "b" * 64}
        for s in ("busybox:1.36", "quay.io/x/tool:v1")  # spelled short: canonical is identity
    ]
    lock = json.dumps({"version": 1, "images": entries}).encode()
    res = run_kferry("images", "--diff", "-", str(a), "-o", "json", "--exit-code", stdin=lock)
    assert res.code == 0, res.err
    got = json.loads(res.out)
    assert got["old"] == {"input": "<stdin>", "kind": "lock", "images": 2}
    assert got["unchanged"] == 2 and not (got["added"] or got["removed"] or got["changed"])
