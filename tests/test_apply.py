"""`kferry apply` of rewritten Kubeflow renders into a real API server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import release_path, run_kferry
from tests.support.cluster import Cluster, start_cluster

TO = "harbor.example.com:8443/kubeflow"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")

# Full renders applied through subprocesses: slow as well as needing the API server.
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def fresh_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of its own: a whole Kubeflow goes into it."""
    cluster = start_cluster(tmp_path_factory.mktemp("apply-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def rewritten_2603(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("apply") / "kubeflow-26.03.yaml"
    res = run_kferry("rewrite", str(release_path("26.03")), "--to", TO, "-o", str(out))
    assert res.code == 0, res.err
    return out


def apply(cluster: Cluster, path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    res = run_kferry(
        "apply",
        str(path),
        "-o",
        "json",
        *args,
        env={"KUBECONFIG": str(cluster.kubeconfig)},
        timeout=600,
    )
    return res.code, json.loads(res.out) if res.out.startswith("{") else {}, res.err


def count_objects(path: Path, exclude: tuple[str, ...] = ()) -> int:
    docs = [d for d in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader) if d]
    return sum(1 for d in docs if d["kind"] not in exclude)


def test_everything_but_webhooks_is_accepted(fresh_cluster: Cluster, rewritten_2603: Path) -> None:
    excl = [a for k in WEBHOOK_KINDS for a in ("--exclude-kind", k)]
    code, summary, err = apply(fresh_cluster, rewritten_2603, *excl, "--timeout", "120s")
    assert code == 0, (summary.get("failed"), err)
    assert summary["failed"] == []
    assert summary["applied"] == count_objects(rewritten_2603, WEBHOOK_KINDS)
    # the objects are there, with kferry as their field manager
    dep = fresh_cluster.get("/apis/apps/v1/namespaces/kubeflow/deployments/ml-pipeline")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(TO + "/")
    managers = {m["manager"] for m in dep["metadata"]["managedFields"]}
    assert "kferry" in managers
    crd = fresh_cluster.get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        "clusterservingruntimes.serving.kserve.io"
    )
    assert any(
        c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"]
    )
    assert fresh_cluster.exists(
        "/apis/serving.kserve.io/v1alpha1/clusterservingruntimes/kserve-sklearnserver"
    )


def test_rerun_changes_nothing(fresh_cluster: Cluster, rewritten_2603: Path) -> None:
    excl = [a for k in WEBHOOK_KINDS for a in ("--exclude-kind", k)]
    code, summary, err = apply(fresh_cluster, rewritten_2603, *excl)
    assert code == 0, err
    assert summary["applied"] == 0 and summary["failed"] == []
    assert summary["unchanged"] == count_objects(rewritten_2603, WEBHOOK_KINDS)


def test_webhooks_wait_for_endpoints_within_the_timeout(
    fresh_cluster: Cluster, rewritten_2603: Path
) -> None:
    # What applying the render costs on this machine now (a rerun: nothing changes, no wait),
    # so that the bound below holds on a loaded machine too.
    excl = [a for k in WEBHOOK_KINDS for a in ("--exclude-kind", k)]
    start = time.monotonic()
    apply(fresh_cluster, rewritten_2603, *excl)
    baseline = time.monotonic() - start
    start = time.monotonic()
    code, summary, _ = apply(fresh_cluster, rewritten_2603, "--timeout", "6s")
    elapsed = time.monotonic() - start
    assert code == 1
    failed = {f["object"]: f["message"] for f in summary["failed"]}
    assert failed and all(o.split("/")[0] in WEBHOOK_KINDS for o in failed)
    msg = failed["MutatingWebhookConfiguration//istio-sidecar-injector"]
    assert "istio-sidecar-injector" in msg and "istio-system/istiod" in msg
    assert "ready endpoints" in msg
    # bounded by --timeout (6 s) plus the time to apply, not by a fixed wall clock
    assert elapsed < 2 * baseline + 6 + 30, (elapsed, baseline)
    # none of them was created: nothing would answer them
    assert not fresh_cluster.exists(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/istio-sidecar-injector"
    )


def test_bad_objects_are_named_with_the_servers_message(
    fresh_cluster: Cluster, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: apply-bad}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken, namespace: apply-bad}\n"
        "spec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: c}}, "
        "spec: {containers: [{name: c, image: x}]}}}\n---\n"
        "apiVersion: example.com/v1\nkind: Nothing\nmetadata: {name: n, namespace: apply-bad}\n"
    )
    code, summary, _ = apply(fresh_cluster, bad, "--timeout", "3s")
    assert code == 1 and summary["applied"] >= 1
    failed = {f["object"]: f["message"] for f in summary["failed"]}
    assert "selector" in failed["Deployment/apply-bad/broken"]
    assert "no matches for kind 'Nothing'" in failed["Nothing/apply-bad/n"]


def test_dry_run_stores_nothing(fresh_cluster: Cluster, tmp_path: Path) -> None:
    cm = tmp_path / "cm.yaml"
    cm.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dry, namespace: default}\ndata: {a: b}\n"
    )
    code, summary, _ = apply(fresh_cluster, cm, "--dry-run")
    assert code == 0 and summary["applied"] == 1
    assert not fresh_cluster.exists("/api/v1/namespaces/default/configmaps/dry")


@pytest.fixture(scope="module")
def cluster_121(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Kubeflow 1.4 speaks APIs removed after Kubernetes 1.21 (v1beta1 CRDs and RBAC)."""
    cluster = start_cluster(tmp_path_factory.mktemp("apply-cluster-121"), kubernetes="1.21")
    yield cluster
    cluster.stop()


def test_kubeflow_141_on_its_kubernetes(cluster_121: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "kubeflow-v1.4.1.yaml"
    res = run_kferry("rewrite", str(release_path("v1.4.1")), "--to", TO, "-o", str(out))
    assert res.code == 0, res.err
    # cert-manager's v1alpha2 objects are stored through its conversion webhook, which the
    # pod-less test cluster cannot run: like webhook configurations they wait for it
    waiting = (*WEBHOOK_KINDS, "Certificate", "Issuer", "ClusterIssuer")
    excl = [a for k in waiting for a in ("--exclude-kind", k)]
    code, summary, err = apply(cluster_121, out, *excl, "--timeout", "120s")
    assert code == 0, (summary.get("failed"), err)
    assert summary["applied"] == count_objects(out, waiting)
    dep = cluster_121.get("/apis/apps/v1/namespaces/kubeflow/deployments/ml-pipeline")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].startswith(TO + "/")

    code, summary, _ = apply(cluster_121, out, "--timeout", "3s")  # now with what waits
    assert code == 1 and summary["applied"] == 0
    failed = {f["object"]: f["message"] for f in summary["failed"]}
    assert len(failed) == count_objects(out) - count_objects(out, waiting)
    assert all("ready endpoints of service" in m for m in failed.values()), failed
    cert = failed["Certificate/kubeflow/serving-cert"]
    assert "converts versions through a webhook" in cert
    assert "cert-manager/cert-manager-webhook" in cert
