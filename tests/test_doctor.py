"""`kferry doctor` on a real API server holding the field report's problems."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kferry.doctor import checks
from tests.conftest import DATA, run_kferry
from tests.support.cluster import Cluster, start_cluster

REGISTRY = "harbor.example.com:8443/kubeflow"

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("doctor-cluster"))
    yield c
    c.stop()


def doctor(cluster: Cluster, *args: str) -> tuple[int, list[dict[str, str]]]:
    res = run_kferry("doctor", "-o", "json", *args, env={"KUBECONFIG": str(cluster.kubeconfig)})
    assert res.code in (0, 1), res.err
    return res.code, json.loads(res.out)


def test_a_clean_cluster_is_clean(cluster: Cluster) -> None:
    assert doctor(cluster, "--registry", REGISTRY) == (0, [])
    res = run_kferry("doctor", env={"KUBECONFIG": str(cluster.kubeconfig)})
    assert res.code == 0 and "no problems found" in res.out


def pod(name: str, image: str, reason: str, message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"containers": [{"name": "main", "image": image}]},
    }
    status = {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "main",
                "image": image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        ],
    }
    return obj, status


def test_problems_are_found_and_explained(cluster: Cluster) -> None:
    cluster.create_namespace("team")
    cluster.create_namespace("knative-serving")
    cluster.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "istio-galley"},
            "webhooks": [
                {
                    "name": "pilot.validation.istio.io",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "clientConfig": {
                        "service": {"namespace": "istio-system", "name": "istio-galley"}
                    },
                    "rules": [
                        {
                            "apiGroups": ["networking.istio.io"],
                            "apiVersions": ["*"],
                            "operations": ["CREATE"],
                            "resources": ["gateways"],
                        }
                    ],
                }
            ],
        }
    )
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "public", "namespace": "team"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {
                        "containers": [
                            {"name": "c", "image": "nginx:1.27"},
                            {"name": "ok", "image": f"{REGISTRY}/docker.io/library/x:1"},
                        ]
                    },
                },
            },
        }
    )
    cases = {
        "tls": (
            "ErrImagePull",
            "rpc error: ... failed to do request: Head "
            '"https://harbor.example.com:8443/v2/...": x509: certificate signed by unknown '
            "authority",
        ),
        "auth": (
            "ImagePullBackOff",
            "Back-off pulling image: pull access denied, "
            "repository does not exist or may require authorization: 401 Unauthorized",
        ),
        "missing": (
            "ErrImagePull",
            "rpc error: code = NotFound desc = failed to pull and unpack image: manifest unknown",
        ),
    }
    for name, (reason, message) in cases.items():
        obj, status = pod(name, f"{REGISTRY}/docker.io/library/{name}:1", reason, message)
        cluster.apply(obj)
        cluster.write_status(f"/api/v1/namespaces/team/pods/{name}", status)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "config-deployment", "namespace": "knative-serving"},
            "data": {"registries-skipping-tag-resolving": "kind.local,ko.local"},
        }
    )

    code, findings = doctor(cluster, "--registry", REGISTRY)
    assert code == 1
    assert all(list(f) == ["severity", "object", "finding", "fix"] for f in findings)
    by_object = {f["object"]: f for f in findings}
    galley = by_object["ValidatingWebhookConfiguration//istio-galley"]
    assert "istio-system/istio-galley" in galley["finding"]
    assert galley["fix"] == "kubectl delete validatingwebhookconfiguration istio-galley"
    public = by_object["Namespace//team"]
    assert "docker.io/library/nginx:1.27" in public["finding"]
    assert "Deployment/team/public" in public["finding"]
    assert f"{REGISTRY}/docker.io/library/x:1" not in public["finding"]
    assert f"--to {REGISTRY}" in public["fix"]
    assert "CA" in by_object["Pod/team/tls"]["fix"]
    assert "pull-secret" in by_object["Pod/team/auth"]["fix"]
    # the source of a missing image, read from the keep layout's path
    assert (
        f"kferry mirror docker.io/library/missing:1 --to {REGISTRY}"
        in by_object["Pod/team/missing"]["fix"]
    )
    assert (
        "harbor.example.com:8443"
        in by_object["ConfigMap/knative-serving/config-deployment"]["finding"]
    )
    # no TokenRequest finding: this API server serves it
    assert not any(f["object"] == "APIServer//api/v1" for f in findings)

    table = run_kferry(
        "doctor", "--registry", REGISTRY, env={"KUBECONFIG": str(cluster.kubeconfig)}
    )
    assert table.code == 1 and "SEVERITY" in table.out and "istio-galley" in table.out


def test_token_request_decision_on_live_and_recorded_discovery(cluster: Cluster) -> None:
    assert list(checks.token_request(cluster.get("/api/v1"))) == []
    recorded = json.loads((DATA / "discovery" / "api-v1-no-tokenrequest.json").read_text())
    [finding] = checks.token_request(recorded)
    assert finding.severity == "error"
    assert "kferry rewrite --fix istio-first-party-jwt" in finding.fix
