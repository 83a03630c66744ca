"""Values kferry cannot read are said out loud (issue 10, item 9); duplicate keys in a pod spec
are an error; terminal escape sequences from condition messages are not printed (item 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_kferry

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: kf}
spec:
  template:
    spec:
      containers:
      - name: ok
        image: docker.io/library/busybox:1.36
%s
"""


@pytest.mark.parametrize(
    ("extra", "path", "words"),
    [
        ("      - name: num\n        image: 12345", "containers[name=num].image", "int '12345'"),
        ("      - name: map\n        image: {a: b}", "containers[name=map].image", "a mapping"),
        ("      initContainers: hello", "spec.initContainers", "not a list of containers"),
        ("      ephemeralContainers: {a: b}", "spec.ephemeralContainers", "not a list"),
        ("      - just-a-string", "containers[1]", "not a container"),
    ],
)
def test_unreadable_image_values_warn_and_the_rest_is_listed(
    tmp_path: Path, extra: str, path: str, words: str
) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(DEPLOYMENT % extra)
    res = run_kferry("images", str(f), "-o", "json")
    assert res.code == 0, res.err
    assert "docker.io/library/busybox:1.36" in res.out
    warning = [line for line in res.err.splitlines() if "warning" in line]
    assert len(warning) == 1, res.err
    assert "Deployment/kf/web" in warning[0] and path in warning[0] and words in warning[0]
    assert str(f) in warning[0]


def test_broken_json_in_a_configmap_kferry_reads_warns(tmp_path: Path) -> None:
    f = tmp_path / "cm.yaml"
    f.write_text(
        """apiVersion: v1
kind: ConfigMap
metadata: {name: inferenceservice-config, namespace: kserve}
data:
  predictors: |-
    {"sklearn": {"image": "kserve/sklearnserver", "defaultImageVersion": "v0.13.1",}
  agent: |-
    {"image": "kserve/agent:v0.13.1"}
"""
    )
    res = run_kferry("images", str(f), "-o", "json")
    assert res.code == 0, res.err
    assert "kserve/agent:v0.13.1" in res.out  # what could be read is still listed
    warnings = [line for line in res.err.splitlines() if "warning" in line]
    assert len(warnings) == 1, res.err
    assert "ConfigMap/kserve/inferenceservice-config" in warnings[0]
    assert "data.predictors" in warnings[0] and "JSON" in warnings[0]


def test_kind_that_is_not_a_string_warns(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    f.write_text(
        "apiVersion: v1\nkind: 5\nmetadata: {name: five}\n"
        "spec:\n  containers:\n  - {name: c, image: docker.io/library/alpine:3.20}\n"
    )
    res = run_kferry("images", str(f), "-o", "json")
    assert res.code == 0
    assert "alpine:3.20" in res.out
    assert "kind is not a string" in res.err and "document 1" in res.err


@pytest.mark.parametrize(
    "spec",
    [
        "  containers:\n  - name: c\n    image: docker.io/library/busybox:1.36\n"
        "    image: evil.example/x:1\n",
        "  containers:\n  - {name: c, image: docker.io/library/busybox:1.36}\n"
        "  containers:\n  - {name: d, image: evil.example/x:1}\n",
    ],
)
@pytest.mark.parametrize("command", [["images"], ["rewrite", "--to", "r.local/p"]])
def test_duplicate_keys_in_a_pod_spec_are_an_error(
    tmp_path: Path, spec: str, command: list[str]
) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: d}\nspec:\n" + spec)
    res = run_kferry(*command, str(f))
    assert res.code == 2, res.out + res.err
    assert str(f) in res.err and "duplicate key" in res.err and "Pod//d" in res.err
    assert "Traceback" not in res.err


def test_status_does_not_print_escape_sequences(tmp_path: Path) -> None:
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m\x1b]0;owned\x07", "namespace": "ns"},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "RevisionFailed",
                    "message": "boom \x1b[2J\x1b[31m[bold]cleared[/bold]\r\x9b6n",
                }
            ]
        },
    }
    f = tmp_path / "isvc.json"
    f.write_text(json.dumps(isvc))
    res = run_kferry("status", "-f", str(f))
    assert res.code == 1, res.out + res.err
    for bad in ("\x1b", "\x07", "\r", "\x9b"):
        assert bad not in res.out + res.err
    assert "\\x1b[2J" in res.out and "[bold]cleared[/bold]" in res.out
