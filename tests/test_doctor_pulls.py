"""kferry.doctor.pulls on pod statuses as a real kubelet v1.37 + containerd 1.6 writes them
(the messages come from tests/test_node_pulls.py, which reproduces each failure on a node)."""

from __future__ import annotations

from typing import Any

from kferry.doctor.pulls import explain, has_host, lock_targets, pull_failures
from kferry.name import parse
from kferry.plan.lock import Lock, LockEntry

REG = "127.0.0.1:5443/kubeflow"


def _pod(image: str, reason: str, message: str, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "containers": [{"name": "main", "image": image}],
            "imagePullSecrets": [{"name": s} for s in secrets],
        },
        "status": {
            "containerStatuses": [
                {
                    "name": "main",
                    "image": image,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
            ]
        },
    }


def test_has_host() -> None:
    assert not has_host("tensorflow/serving:1.14.0")
    assert not has_host("busybox")
    assert has_host("gcr.io/ml-pipeline/frontend:2.0.0")
    assert has_host("127.0.0.1:5000/a/b")
    assert has_host("localhost/a")


def test_each_cause_has_its_fix() -> None:
    x509 = (
        'failed to pull and unpack image "127.0.0.1:5443/kubeflow/a:v1": failed to resolve '
        'reference "127.0.0.1:5443/kubeflow/a:v1": failed to do request: Head '
        '"https://127.0.0.1:5443/v2/kubeflow/a/manifests/v1": tls: failed to verify '
        "certificate: x509: certificate signed by unknown authority"
    )
    meaning, fix = explain("127.0.0.1:5443/kubeflow/a:v1", x509, {}, REG, {})
    assert "does not trust" in meaning and "CA" in fix
    unauthorized = (
        'failed to pull and unpack image "127.0.0.1:5443/kubeflow/a:v1": failed to resolve '
        "reference: unexpected status from HEAD request to "
        "https://127.0.0.1:5443/v2/kubeflow/a/manifests/v1: 401 Unauthorized"
    )
    meaning, fix = explain("127.0.0.1:5443/kubeflow/a:v1", unauthorized, {}, REG, {})
    assert "no pull secret" in meaning and "pull-secret=NAME" in fix
    pod = _pod("127.0.0.1:5443/kubeflow/a:v1", "ErrImagePull", unauthorized, ("regcred",))
    meaning, fix = explain("127.0.0.1:5443/kubeflow/a:v1", unauthorized, pod, REG, {})
    assert "regcred" in meaning and "regcred" in fix
    hub = (
        'failed to pull and unpack image "docker.io/tensorflow/serving:1.14.0": dial tcp '
        "127.0.0.1:9: connect: connection refused"
    )
    meaning, fix = explain("tensorflow/serving:1.14.0", hub, {}, REG, {})
    assert "Docker Hub" in meaning and f"kferry rewrite --to {REG}" in fix
    missing = (
        'rpc error: code = NotFound desc = failed to pull and unpack image "127.0.0.1:5443/'
        'kubeflow/gcr.io/ml-pipeline/frontend:2.0.0": failed to resolve reference '
        '"127.0.0.1:5443/kubeflow/gcr.io/ml-pipeline/frontend:2.0.0": 127.0.0.1:5443/kubeflow/'
        "gcr.io/ml-pipeline/frontend:2.0.0: not found"
    )
    image = f"{REG}/gcr.io/ml-pipeline/frontend:2.0.0"
    meaning, fix = explain(image, missing, {}, REG, {})
    assert "not in the mirror" in meaning
    assert fix == f"copy it: kferry mirror gcr.io/ml-pipeline/frontend:2.0.0 --to {REG}"
    lock = lock_targets(  # by the lock
        Lock([LockEntry(parse("quay.io/x/y:1"), parse(image), "sha256:" + "a" * 64)])
    )
    assert explain(image, missing, {}, REG, lock)[1].startswith("copy it: kferry mirror quay.io/x")
    refused = "dial tcp 127.0.0.1:5443: connect: connection refused"
    assert "cannot reach" in explain(image, refused, {}, REG, {})[0]


def test_one_finding_per_failing_container() -> None:
    pod = _pod("tensorflow/serving:1.14.0", "ImagePullBackOff", "Back-off pulling image")
    pod["status"]["containerStatuses"].append(
        {"name": "ok", "image": "x", "state": {"running": {}}}
    )
    findings = list(pull_failures([pod], REG))
    assert len(findings) == 1
    assert findings[0].object == "Pod/ns/p" and "Docker Hub" in findings[0].finding
