"""Loading input: files, stdin, gzip, kustomize directories, and bad input of every kind."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_kferry

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  containers:
  - name: c
    image: busybox:1.36
"""


def images_json(*args: str, stdin: bytes | None = None) -> list[dict[str, Any]]:
    res = run_kferry("images", "-o", "json", *args, stdin=stdin)
    assert res.code == 0, res.err
    data: list[dict[str, Any]] = json.loads(res.out)
    return data


def test_stdin_dash(tmp_path: Path) -> None:
    got = images_json("-", stdin=POD.encode())
    assert [i["image"] for i in got] == ["docker.io/library/busybox:1.36"]
    assert got[0]["locations"] == [
        {"object": "Pod/ns/p", "path": "spec.containers[name=c].image", "how": "field"}
    ]


def test_multi_document_list_kind_and_empty_documents(tmp_path: Path) -> None:
    text = (
        "---\n---\n" + POD + "---\n# only a comment\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d, namespace: x}\n"
        "  spec:\n    template:\n      spec:\n        initContainers:\n"
        "        - {name: i, image: 'alpine:3.20'}\n        containers:\n"
        "        - {name: m, image: 'quay.io/a/b@sha256:" + "f" * 64 + "'}\n"
    )
    f = tmp_path / "m.yaml"
    f.write_text(text)
    got = {i["image"]: i for i in images_json(str(f))}
    assert set(got) == {
        "docker.io/library/busybox:1.36",
        "docker.io/library/alpine:3.20",
        "quay.io/a/b@sha256:" + "f" * 64,
    }
    assert got["docker.io/library/alpine:3.20"]["locations"][0]["object"] == "Deployment/x/d"


def test_gzip_file_and_several_paths(tmp_path: Path) -> None:
    gz = tmp_path / "a.yaml.gz"
    gz.write_bytes(gzip.compress(POD.encode()))
    other = tmp_path / "b.yaml"
    other.write_text(POD.replace("busybox:1.36", "nginx:1.27").replace("name: p", "name: q"))
    assert [i["image"] for i in images_json(str(gz), str(other))] == [
        "docker.io/library/busybox:1.36",
        "docker.io/library/nginx:1.27",
    ]


def test_malformed_yaml_names_file_document_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(POD + "---\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n")
    res = run_kferry("images", str(f))
    assert res.code == 2
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert str(f) in lines[0]
    assert "document 2" in lines[0]
    assert "line 12" in lines[0]
    assert res.out == ""


def test_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    f = tmp_path / "seq.yaml"
    f.write_text(POD + "---\n- just\n- a list\n")
    res = run_kferry("images", str(f))
    assert res.code == 2
    assert "document 2" in res.err and "expected a Kubernetes object" in res.err
    assert "sequence" in res.err


def test_mapping_without_kind(tmp_path: Path) -> None:
    f = tmp_path / "values.yaml"
    f.write_text("image: busybox\nreplicas: 2\n")
    res = run_kferry("images", str(f))
    assert res.code == 2
    assert "document 1" in res.err and "no 'kind'" in res.err


def test_binary_input(tmp_path: Path) -> None:
    f = tmp_path / "blob.bin"
    f.write_bytes(os.urandom(64) + b"\x00" + os.urandom(64))
    res = run_kferry("images", str(f))
    assert res.code == 2
    assert str(f) in res.err and ("binary" in res.err or "UTF-8" in res.err)
    assert "Traceback" not in res.err


def test_non_utf8_input(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"kind: ConfigMap\nmetadata: {name: caf\xe9}\n")
    res = run_kferry("images", str(f))
    assert (
        res.code == 2 and "not UTF-8" in res.err and "line 2" in res.err and "offset 36" in res.err
    )


def test_empty_file_is_not_an_error(tmp_path: Path) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text("")
    res = run_kferry("images", "-o", "json", str(f))
    assert res.code == 0
    assert json.loads(res.out) == []
    assert "no Kubernetes objects" in res.err


def test_missing_file(tmp_path: Path) -> None:
    res = run_kferry("images", str(tmp_path / "nope.yaml"))
    assert res.code == 2 and "no such file" in res.err


def test_kustomize_directory(tmp_path: Path) -> None:
    if not (shutil.which("kustomize") or shutil.which("kubectl")):
        pytest.fail("kustomize or kubectl must be on PATH (.ci/run builds kustomize)")
    (tmp_path / "pod.yaml").write_text(POD)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [pod.yaml]\nimages:\n- name: busybox\n  newName: registry.k8s.io/busybox\n"
    )
    got = images_json(str(tmp_path))
    assert [i["image"] for i in got] == ["registry.k8s.io/busybox:1.36"]


def test_kustomize_directory_without_a_renderer(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    res = run_kferry("images", str(tmp_path), env={"PATH": str(tmp_path / "empty")})
    assert res.code == 2
    assert "neither 'kustomize' nor 'kubectl'" in res.err


def test_no_input_on_a_terminal_is_usage_error() -> None:
    res = run_kferry("images", "--output", "xml")
    assert res.code == 2 and "xml" in res.err
