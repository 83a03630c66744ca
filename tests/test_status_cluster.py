"""`kferry status` against a real API server with KServe's InferenceService CRD."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import run_kferry
from tests.corpus_objects import find_object
from tests.support.cluster import Cluster
from tests.support.cluster_fixtures import Kube

pytestmark = pytest.mark.cluster

READY = {
    "conditions": [
        {"type": "PredictorReady", "status": "True"},
        {"type": "Ready", "status": "True"},
    ],
    "url": "http://m.example.com",
}
DEPLOYING = {
    "conditions": [
        {
            "type": "PredictorReady",
            "status": "Unknown",
            "reason": "RevisionMissing",
            "message": 'Configuration "m-predictor" is waiting for a Revision to become ready.',
        },
        {"type": "Ready", "status": "Unknown"},
    ]
}
FAILED = {
    "conditions": [
        {
            "type": "PredictorConfigurationReady",
            "status": "False",
            "reason": "RevisionFailed",
            "message": 'Revision "m-predictor-00001" failed with message: Unable to fetch image '
            '"harbor.local/kf/x:1": failed to resolve image to digest: x509: '
            "certificate signed by unknown authority.",
        },
        {
            "type": "Ready",
            "status": "False",
            "reason": "RevisionMissing",
            "message": 'Configuration "m-predictor" does not have any ready Revision.',
        },
    ]
}


@pytest.fixture(scope="module")
def isvc_crd(kube_cluster: Cluster) -> Cluster:
    crd = find_object("26.03", "CustomResourceDefinition", "inferenceservices.serving.kserve.io")
    kube_cluster.apply(crd)
    return kube_cluster


def isvc(kube: Kube, name: str, status: dict[str, Any] | None) -> str:
    kube.apply(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {"predictor": {"sklearn": {"storageUri": "pvc://models/iris"}}},
        }
    )
    path = kube.ns_path("inferenceservices", name, "serving.kserve.io/v1beta1")
    if status is not None:
        kube.cluster.write_status(path, status)
    return path


def status(kube: Kube, *args: str) -> tuple[int, Any, str]:
    res = run_kferry("status", *args, "-o", "json", env={"KUBECONFIG": str(kube.kubeconfig)})
    return res.code, json.loads(res.out) if res.out.strip() else None, res.err


def test_states_from_the_api_server(isvc_crd: Cluster, kube: Kube) -> None:
    isvc(kube, "ready", READY)
    isvc(kube, "broken", FAILED)
    isvc(kube, "coming", DEPLOYING)
    code, out, err = status(kube, "-n", kube.namespace)
    assert code == 1, err
    got = {d["name"]: d for d in out}
    assert got["ready"]["state"] == "ready" and got["ready"]["url"] == "http://m.example.com"
    assert got["broken"]["state"] == "failed" and "x509" in got["broken"]["message"]
    assert got["coming"]["state"] == "deploying"
    code, out, _ = status(kube, "ready", "-n", kube.namespace)
    assert code == 0 and [d["name"] for d in out] == ["ready"]
    code, out, _ = status(kube, "-A")
    assert {d["namespace"] for d in out} >= {kube.namespace}


@pytest.mark.parametrize(("final", "code", "state"), [(READY, 0, "ready"), (FAILED, 1, "failed")])
def test_wait_sees_deploying_turn_into(
    final: dict[str, Any], code: int, state: str, isvc_crd: Cluster, kube: Kube
) -> None:
    path = isvc(kube, "m", DEPLOYING)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kferry",
            "status",
            "m",
            "-n",
            kube.namespace,
            "--wait",
            "--timeout",
            "60s",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    time.sleep(2.5)
    assert proc.poll() is None, "returned while still deploying"
    kube.cluster.write_status(path, final)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert [d["state"] for d in json.loads(out)] == [state]


def test_wait_times_out_with_exit_3(isvc_crd: Cluster, kube: Kube) -> None:
    isvc(kube, "slow", DEPLOYING)
    start = time.monotonic()
    code, out, err = status(kube, "slow", "-n", kube.namespace, "--wait", "--timeout", "3s")
    assert code == 3 and out[0]["state"] == "deploying"
    assert f"timed out after 3s; still deploying: {kube.namespace}/slow (waiting on " in err
    assert time.monotonic() - start < 20


@pytest.mark.parametrize(("final", "code", "state"), [(READY, 0, "ready"), (FAILED, 1, "failed")])
def test_watch_prints_each_change(
    final: dict[str, Any], code: int, state: str, isvc_crd: Cluster, kube: Kube
) -> None:
    path = isvc(kube, "w", DEPLOYING)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kferry",
            "status",
            "w",
            "-n",
            kube.namespace,
            "--watch",
            "--timeout",
            "12s",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    time.sleep(3)
    kube.cluster.write_status(path, final)
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == code, err
    decoder, pos, states = json.JSONDecoder(), 0, []
    text = out.decode()
    while pos < len(text.rstrip()):
        doc, pos = decoder.raw_decode(text, pos)
        states.append(doc[0]["state"])
        while pos < len(text) and text[pos].isspace():
            pos += 1
    assert states == ["deploying", state]  # once per change, not once per poll
