"""The cluster test harness is real: kube-apiserver v1.37 on etcd answers /version, checks
credentials and RBAC, stores ConfigMaps, establishes CRDs, validates custom resources against
their schema, keeps status behind the status subresource, issues TokenRequests; the controller
manager finalizes namespaces and collects garbage; scripts/test-cluster starts and stops
cleanly. The Kubernetes 1.21 one (kube-apiserver v1.21.14 on etcd 3.4) serves the API versions
removed since, v1beta1 CRDs among them. Neither dials a Service's ClusterIP for a webhook."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.cluster import ROOT, Cluster, ClusterError, attach, tls_context
from tests.support.cluster_fixtures import Kube, unique_namespace

KUBERNETES_VERSION = "v1.37.2"
KUBERNETES_121_VERSION = "v1.21.14"

# A CRD as Kubeflow 1.4 writes them: apiextensions.k8s.io/v1beta1, one `version`, a top-level
# `validation` schema, status subresource.
LEGACY_CRD = """
apiVersion: apiextensions.k8s.io/v1beta1
kind: CustomResourceDefinition
metadata:
  name: notebooks.legacy.kferry.dev
spec:
  group: legacy.kferry.dev
  version: v1alpha1
  scope: Namespaced
  names: {plural: notebooks, singular: notebook, kind: Notebook, listKind: NotebookList}
  subresources: {status: {}}
  validation:
    openAPIV3Schema:
      type: object
      properties:
        spec:
          type: object
          properties:
            image: {type: string}
            replicas: {type: integer, minimum: 0}
"""

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.kferry.dev
spec:
  group: test.kferry.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                image: {type: string}
                replicas: {type: integer, minimum: 0}
            status:
              type: object
              properties:
                url: {type: string}
                conditions:
                  type: array
                  items:
                    type: object
                    properties:
                      type: {type: string}
                      status: {type: string}
"""


def widget(name: str, replicas: int = 1) -> dict[str, object]:
    return {
        "apiVersion": "test.kferry.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"image": "docker.io/library/busybox:1.36", "replicas": replicas},
    }


# --- the server is real and secured


@pytest.mark.cluster
def test_version_and_readyz(kube_cluster: Cluster) -> None:
    version = kube_cluster.get("/version")
    assert version["gitVersion"] == KUBERNETES_VERSION
    assert (version["major"], version["minor"]) == ("1", "37")
    assert kube_cluster.request("GET", "/readyz").text == "ok"
    assert kube_cluster.running
    assert 0 < kube_cluster.start_seconds < 60, kube_cluster.timings


@pytest.mark.cluster
def test_kubeconfig_alone_is_enough(kube_cluster: Cluster, tmp_path: Path) -> None:
    """What a client that only reads the kubeconfig (as kferry does) sees: everything it needs
    is embedded, and the user is in system:masters."""
    config = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    user = next(u for u in config["users"] if u["name"] == context["context"]["user"])
    for key, name in (
        ("certificate-authority-data", "ca.crt"),
        ("client-certificate-data", "client.crt"),
        ("client-key-data", "client.key"),
    ):
        source = cluster["cluster"] if key.startswith("certificate-authority") else user["user"]
        (tmp_path / name).write_bytes(base64.b64decode(source[key]))
    context = tls_context(tmp_path / "ca.crt", tmp_path / "client.crt", tmp_path / "client.key")
    with httpx.Client(base_url=cluster["cluster"]["server"], verify=context) as client:
        review = client.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert review.status_code == 201, review.text
        info = review.json()["status"]["userInfo"]
        assert info["username"] == "kferry-admin"
        assert "system:masters" in info["groups"]
        namespaces = client.get("/api/v1/namespaces").json()
    assert {"default", "kube-system", "kube-public"} <= {
        item["metadata"]["name"] for item in namespaces["items"]
    }


@pytest.mark.cluster
def test_token_works_and_anonymous_is_refused(kube_cluster: Cluster) -> None:
    with kube_cluster.client(admin=False) as client:
        assert client.get("/api/v1/namespaces").status_code == 403  # anonymous: RBAC says no
        assert client.get("/version").status_code == 200  # public info
        response = client.get(
            "/api/v1/namespaces", headers={"Authorization": f"Bearer {kube_cluster.token}"}
        )
        assert response.status_code == 200
        wrong = client.get("/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    with (
        pytest.raises(httpx.ConnectError),
        httpx.Client(base_url=kube_cluster.server) as untrusting,  # system CAs only
    ):
        untrusting.get("/version")


# --- objects


@pytest.mark.cluster
def test_namespace_and_configmap(kube: Kube) -> None:
    namespace = kube.cluster.get(f"/api/v1/namespaces/{kube.namespace}")
    assert namespace["status"]["phase"] == "Active"
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"image": "docker.io/library/python:3.12"},
    }
    created = kube.apply(config_map)
    assert created["metadata"]["namespace"] == kube.namespace
    assert created["metadata"]["uid"]
    path = kube.ns_path("configmaps", "settings")
    assert kube.cluster.get(path)["data"] == {"image": "docker.io/library/python:3.12"}

    config_map["data"] = {"image": "registry.local/python:3.12"}
    replaced = kube.apply(config_map)  # exists: replaced, same object
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(replaced["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    assert kube.cluster.get(path)["data"] == {"image": "registry.local/python:3.12"}

    patched = kube.cluster.patch(path, {"data": {"extra": "1"}})
    assert patched["data"] == {"image": "registry.local/python:3.12", "extra": "1"}
    names = [
        item["metadata"]["name"] for item in kube.cluster.get(kube.ns_path("configmaps"))["items"]
    ]
    assert "settings" in names

    with pytest.raises(ClusterError) as conflict:
        kube.cluster.post(
            kube.ns_path("configmaps"), {**config_map, "metadata": {"name": "settings"}}
        )
    assert (conflict.value.status, conflict.value.reason) == (409, "AlreadyExists")
    assert kube.cluster.delete(path) is not None
    assert not kube.cluster.exists(path)
    assert kube.cluster.delete(path) is None


# --- CRDs, custom resources, the status subresource


@pytest.mark.cluster
def test_crd_established_then_custom_resource_and_status(kube: Kube) -> None:
    kube.cluster.apply_yaml(WIDGET_CRD)  # waits for Established
    crd = kube.cluster.wait_established("widgets.test.kferry.dev")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"

    created = kube.apply(widget("w1"))
    path = kube.ns_path("widgets", "w1", api_version="test.kferry.dev/v1")
    assert kube.cluster.path_for(created) == path
    assert "status" not in created

    status = {"url": "http://w1.example", "conditions": [{"type": "Ready", "status": "True"}]}
    stored = kube.cluster.write_status(path, status)
    assert stored["status"] == status
    assert stored["spec"] == created["spec"]
    assert kube.cluster.get(path)["status"] == status

    # The main resource ignores status, the status subresource ignores spec: it is real.
    current = kube.cluster.get(path)
    current["status"] = {"url": "http://ignored"}
    current["spec"]["replicas"] = 3
    after = kube.cluster.put(path, current)
    assert after["status"] == status
    assert after["spec"]["replicas"] == 3
    assert after["metadata"]["generation"] == 2

    # The schema is enforced.
    with pytest.raises(ClusterError) as invalid:
        kube.apply(widget("w2", replicas=-1))
    assert invalid.value.status == 422


@pytest.mark.cluster
def test_apply_yaml_many_documents(kube: Kube) -> None:
    text = (
        WIDGET_CRD
        + "\n---\n"
        + yaml.safe_dump(widget("from-yaml", replicas=2))
        + "---\n"
        + yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}},
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "ClusterRole",
                        "metadata": {"name": f"{kube.namespace}-reader"},
                        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
                    },
                ],
            }
        )
        + "---\n"
    )
    stored = kube.apply_yaml(text)
    assert [obj["kind"] for obj in stored] == [
        "CustomResourceDefinition",
        "Widget",
        "ServiceAccount",
        "ClusterRole",
    ]
    assert stored[1]["metadata"]["namespace"] == kube.namespace
    assert "namespace" not in stored[3]["metadata"]  # cluster-scoped
    again = kube.apply_yaml(text)  # idempotent
    assert [obj["metadata"]["uid"] for obj in again] == [obj["metadata"]["uid"] for obj in stored]
    kube.cluster.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{kube.namespace}-reader")


# --- what later tests rely on


@pytest.mark.cluster
def test_discovery_lists_token_request_and_it_works(kube: Kube) -> None:
    resources = {r["name"]: r for r in kube.cluster.get("/api/v1")["resources"]}
    token = resources["serviceaccounts/token"]
    assert (token["group"], token["version"], token["kind"]) == (
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
    )
    assert token["verbs"] == ["create"]

    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}})
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600},
    }
    issued = kube.cluster.post(kube.ns_path("serviceaccounts", "robot") + "/token", request)
    jwt = issued["status"]["token"]
    with kube.cluster.client(admin=False) as client:
        review = client.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            headers={"Authorization": f"Bearer {jwt}"},
        )
    assert review.status_code == 201, review.text
    username = review.json()["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{kube.namespace}:robot"


def test_unique_namespace_is_a_dns_label() -> None:
    long = unique_namespace("test_something[" + "x" * 100 + "-param_1]")
    assert len(long) <= 63
    assert long[0].isalnum() and long[-1].isalnum()
    assert set(long) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert unique_namespace("same") != unique_namespace("same")


# --- kube-controller-manager: namespace deletion, garbage collection, service accounts


@pytest.mark.cluster
def test_controller_manager_finalizes_namespaces_and_collects_garbage(
    kube_controllers: Cluster, kube: Kube
) -> None:
    cluster = kube_controllers
    assert cluster.has_controller_manager
    # The serviceaccount and root-ca publisher controllers fill every new namespace.
    cluster.wait_for(
        lambda: cluster.exists(kube.ns_path("serviceaccounts", "default")),
        "the default service account",
    )
    cluster.wait_for(
        lambda: cluster.exists(kube.ns_path("configmaps", "kube-root-ca.crt")),
        "kube-root-ca.crt",
    )

    owner = kube.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}, "data": {}}
    )
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "dependent", "ownerReferences": [reference]},
            "stringData": {"k": "v"},
        }
    )
    cluster.delete(kube.ns_path("configmaps", "owner"))
    cluster.wait_gone(kube.ns_path("secrets", "dependent"), timeout=60)

    doomed = unique_namespace("doomed")
    cluster.create_namespace(doomed)
    cluster.post(
        f"/api/v1/namespaces/{doomed}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    )
    cluster.delete(f"/api/v1/namespaces/{doomed}")
    cluster.wait_gone(f"/api/v1/namespaces/{doomed}", timeout=60)


# --- scripts/test-cluster, the entry point for outside checks


@pytest.mark.cluster
@pytest.mark.slow
def test_script_starts_reuses_and_stops(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "test-cluster")
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "KFERRY_CLUSTER_CONTROLLER_MANAGER"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *args, "--dir", str(run_dir)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,  # not the repository: the script finds its own way
            timeout=300,
            check=False,
        )

    started = run("start")
    try:
        assert started.returncode == 0, started.stderr
        last = started.stdout.strip().splitlines()[-1]
        assert last == f"export KUBECONFIG={run_dir.resolve() / 'kubeconfig'}"
        cluster = attach(run_dir)
        assert cluster is not None and cluster.running
        pids = [process.pid for process in cluster.processes.values()]
        assert cluster.get("/version")["gitVersion"] == KUBERNETES_VERSION

        again = run("start")  # already running: reused
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines()[-1] == last
        reattached = attach(run_dir)
        assert reattached is not None and reattached.server == cluster.server
        assert run("status").returncode == 0
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
    assert run("status").returncode == 1
    assert run("stop").returncode == 0  # nothing left: still fine


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


# --- Kubernetes 1.21: the API versions removed since


@pytest.mark.cluster
def test_kubernetes_121_version_and_removed_api_versions(kube_cluster_121: Cluster) -> None:
    cluster = kube_cluster_121
    version = cluster.get("/version")
    assert version["gitVersion"] == KUBERNETES_121_VERSION
    assert (version["major"], version["minor"]) == ("1", "21")
    assert cluster.request("GET", "/readyz").text == "ok"
    assert cluster.running and cluster.kubernetes == "1.21"
    assert 0 < cluster.start_seconds < 60, cluster.timings
    # What the Kubeflow 1.4 render uses, all gone from kube-apiserver v1.37.
    for api_version, plural in (
        ("apiextensions.k8s.io/v1beta1", "customresourcedefinitions"),
        ("rbac.authorization.k8s.io/v1beta1", "clusterroles"),
        ("policy/v1beta1", "poddisruptionbudgets"),
        ("autoscaling/v2beta2", "horizontalpodautoscalers"),
    ):
        names = {resource["name"] for resource in cluster.api_resources(api_version)}
        assert plural in names, api_version
    deprecated = cluster.request(
        "GET", "/apis/apiextensions.k8s.io/v1beta1/customresourcedefinitions"
    )
    assert "unavailable in v1.22+" in deprecated.headers.get("warning", "")
    with pytest.raises(ClusterError, match="no kube-controller-manager"):
        cluster.start_controller_manager()


@pytest.mark.cluster
def test_kubernetes_121_v1beta1_crd_and_custom_resource(kube_121: Kube) -> None:
    cluster = kube_121.cluster
    stored = cluster.apply_yaml(LEGACY_CRD)  # waits for Established
    assert stored[0]["apiVersion"] == "apiextensions.k8s.io/v1beta1"
    crd = cluster.wait_established("notebooks.legacy.kferry.dev")  # read back as v1
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]
    legacy = cluster.get(
        "/apis/apiextensions.k8s.io/v1beta1/customresourcedefinitions/notebooks.legacy.kferry.dev"
    )
    assert legacy["spec"]["version"] == "v1alpha1"

    notebook = {
        "apiVersion": "legacy.kferry.dev/v1alpha1",
        "kind": "Notebook",
        "metadata": {"name": "nb"},
        "spec": {"image": "docker.io/jupyter/base-notebook:latest", "replicas": 1},
    }
    created = kube_121.apply(notebook)
    path = kube_121.ns_path("notebooks", "nb", api_version="legacy.kferry.dev/v1alpha1")
    assert cluster.path_for(created) == path
    assert cluster.get(path)["spec"]["replicas"] == 1
    assert cluster.write_status(path, {"ready": True})["status"] == {"ready": True}
    with pytest.raises(ClusterError) as invalid:  # the v1beta1 validation schema is enforced
        kube_121.apply({**notebook, "metadata": {"name": "bad"}, "spec": {"replicas": -1}})
    assert invalid.value.status == 422

    # And the other removed versions store objects, as Kubeflow 1.4 writes them.
    pdb = kube_121.apply(
        {
            "apiVersion": "policy/v1beta1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "pdb"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "nb"}}},
        }
    )
    assert pdb["apiVersion"] == "policy/v1beta1"
    role = kube_121.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1beta1",
            "kind": "Role",
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        }
    )
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1beta1"


# --- no webhook call leaves the machine


@pytest.mark.parametrize("cluster_fixture", ["kube_cluster", "kube_cluster_121"])
@pytest.mark.cluster
def test_webhook_services_are_reached_through_endpoints(
    cluster_fixture: str, request: pytest.FixtureRequest
) -> None:
    """A CRD's conversion webhook names a Service with a ClusterIP (10.0.0.x) and no pods: the
    API server looks for its endpoints and fails at once, instead of dialing that address
    (--enable-aggregator-routing); admission webhooks and APIServices resolve the same way."""
    cluster: Cluster = request.getfixturevalue(cluster_fixture)
    namespace = unique_namespace(f"conversion-{cluster.kubernetes}")
    cluster.create_namespace(namespace)
    service = cluster.post(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "converter"},
            "spec": {"ports": [{"port": 443}]},
        },
    )
    assert service["spec"]["clusterIP"].startswith("10.0.0.")
    group = f"{namespace}.kferry.dev"
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    cluster.apply(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"gadgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "gadgets", "kind": "Gadget"},
                "conversion": {
                    "strategy": "Webhook",
                    "webhook": {
                        "conversionReviewVersions": ["v1"],
                        "clientConfig": {"service": {"namespace": namespace, "name": "converter"}},
                    },
                },
                "versions": [
                    {"name": "v1", "served": True, "storage": True, "schema": schema},
                    {"name": "v2", "served": True, "storage": False, "schema": schema},
                ],
            },
        }
    )
    started = time.monotonic()
    with pytest.raises(ClusterError) as failed:  # v2 must be converted to v1 to be stored
        cluster.post(
            f"/apis/{group}/v2/namespaces/{namespace}/gadgets",
            {"apiVersion": f"{group}/v2", "kind": "Gadget", "metadata": {"name": "g"}},
        )
    message = str(failed.value)
    assert "conversion webhook" in message
    assert "endpoints" in message, message  # not a dial, TLS or timeout error
    assert time.monotonic() - started < 5
    cluster.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{group}")


@pytest.mark.cluster
@pytest.mark.slow
def test_script_starts_kubernetes_121(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "test-cluster")
    run_dir = tmp_path / "run"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *args, "--dir", str(run_dir)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
            check=False,
        )

    refused = run("start", "--kubernetes", "1.21", "--with-controller-manager")
    assert refused.returncode == 1
    assert "no kube-controller-manager for Kubernetes 1.21" in refused.stderr
    started = run("start", "--kubernetes", "1.21")
    try:
        assert started.returncode == 0, started.stderr
        assert "kube-apiserver v1.21.14 at https://127.0.0.1:" in started.stderr
        cluster = attach(run_dir)
        assert cluster is not None and cluster.running and cluster.kubernetes == "1.21"
        pids = [process.pid for process in cluster.processes.values()]
        assert sorted(cluster.processes) == ["etcd", "kube-apiserver"]
        assert cluster.get("/version")["gitVersion"] == KUBERNETES_121_VERSION
        assert run("start", "--kubernetes", "1.21").returncode == 0  # reused
        other = run("start")  # the default version, but 1.21 runs there
        assert other.returncode == 1
        assert "a Kubernetes 1.21 cluster is running" in other.stderr
        assert run("status").returncode == 0
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
