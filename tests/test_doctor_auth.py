"""`kferry doctor` on the login chain, on a real API server holding a whole Kubeflow render.

Each release gets its own cluster (1.4.1 the Kubernetes 1.21 one its v1beta1 APIs need) and its
render applied with `kferry apply`, as test_apply.py does. The pristine render's chain is
consistent, so the only findings are about readiness (an API server alone runs no pods); then
each test breaks one thing the way an admin's edit would and doctor must name it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import release_path, run_kferry
from tests.support.cluster import DEFAULT_KUBERNETES, Cluster, start_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
# cert-manager's v1alpha2 objects wait for its conversion webhook in 1.4.1 (see test_apply.py)
WAITING = (*WEBHOOK_KINDS, "Certificate", "Issuer", "ClusterIssuer")
AUTH_OBJECTS = (
    "Deployment/auth/dex",
    "Deployment/oauth2-proxy/oauth2-proxy",
    "StatefulSet/istio-system/authservice",
)
SECURITY = "/apis/security.istio.io/v1beta1/namespaces/istio-system"
NETWORKING = "/apis/networking.istio.io/v1alpha3"


def _render_file(release: str, tmp: Path) -> Path:
    out = tmp / f"kubeflow-{release}.yaml"
    out.write_bytes(gzip.decompress(release_path(release).read_bytes()))
    return out


@pytest.fixture(scope="module", params=["v1.4.1", "v1.9.1", "26.03"])
def kubeflow(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Cluster]]:
    release: str = request.param
    tmp = tmp_path_factory.mktemp(f"doctor-auth-{release}")
    kubernetes = "1.21" if release == "v1.4.1" else DEFAULT_KUBERNETES
    cluster = start_cluster(tmp / "cluster", kubernetes=kubernetes)
    try:
        excl = [a for k in WAITING for a in ("--exclude-kind", k)]
        res = run_kferry(
            "apply", str(_render_file(release, tmp)), "-o", "json", *excl, "--timeout", "120s",
            env={"KUBECONFIG": str(cluster.kubeconfig)}, timeout=900,
        )  # fmt: skip
        assert res.code == 0, res.err[-2000:]
        yield release, cluster
    finally:
        cluster.stop()


def doctor(cluster: Cluster) -> list[dict[str, str]]:
    res = run_kferry("doctor", "-o", "json", env={"KUBECONFIG": str(cluster.kubeconfig)})
    assert res.code in (0, 1), res.err
    findings: list[dict[str, str]] = json.loads(res.out)
    return findings


def auth_findings(cluster: Cluster) -> list[dict[str, str]]:
    keys = ("auth", "oauth2-proxy", "authservice", "dex", "Profile", "RequestAuthentication",
            "AuthorizationPolicy", "EnvoyFilter")  # fmt: skip
    return [f for f in doctor(cluster) if any(k in f["object"] for k in keys)]


def service_path(release: str) -> str:
    if release == "v1.4.1":
        return "/apis/apps/v1/namespaces/istio-system/statefulsets/authservice"
    return "/apis/apps/v1/namespaces/oauth2-proxy/deployments/oauth2-proxy"


class Restore:
    """Put objects back after a test changed them (the module shares one cluster)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.saved: list[tuple[str, dict[str, Any]]] = []

    def save(self, path: str) -> dict[str, Any]:
        obj = self.cluster.get(path)
        self.saved.append((path, obj))
        return obj

    def put_back(self) -> None:
        for path, obj in reversed(self.saved):
            current = self.cluster.get(path) if self.cluster.exists(path) else None
            body = dict(obj)
            body["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
            if current is None:
                body["metadata"].pop("resourceVersion", None)
                collection = path.rsplit("/", 1)[0]
                self.cluster.request("POST", collection, json=body)
            else:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.cluster.request("PUT", path, json=body)


@pytest.fixture
def restore(kubeflow: tuple[str, Cluster]) -> Iterator[Restore]:
    r = Restore(kubeflow[1])
    yield r
    r.put_back()


def test_the_pristine_chain_only_lacks_running_pods(kubeflow: tuple[str, Cluster]) -> None:
    release, cluster = kubeflow
    findings = auth_findings(cluster)
    objects = sorted(f["object"] for f in findings)
    service = (
        "StatefulSet/istio-system/authservice"
        if release == "v1.4.1"
        else ("Deployment/oauth2-proxy/oauth2-proxy")
    )
    assert objects == sorted(["Deployment/auth/dex", service]), findings
    assert all("not ready" in f["finding"] for f in findings)


def test_ready_pods_clear_the_readiness_findings(
    kubeflow: tuple[str, Cluster], restore: Restore
) -> None:
    release, cluster = kubeflow
    for path in ("/apis/apps/v1/namespaces/auth/deployments/dex", service_path(release)):
        obj = cluster.get(path)
        n = obj["spec"].get("replicas", 1)
        cluster.write_status(path, {"replicas": n, "readyReplicas": n, "availableReplicas": n})
    assert auth_findings(cluster) == []


def test_an_issuer_that_is_not_dexs(kubeflow: tuple[str, Cluster], restore: Restore) -> None:
    release, cluster = kubeflow
    wrong = "https://dex.example.com/dex"
    if release == "v1.4.1":
        path = "/api/v1/namespaces/istio-system/configmaps/oidc-authservice-parameters"
        restore.save(path)
        cluster.patch(path, {"data": {"OIDC_PROVIDER": wrong}})
        expected = "OIDC_PROVIDER"
    else:
        deployment = cluster.get(service_path(release))
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        name = next(v["configMap"]["name"] for v in volumes if v["name"] == "oauth2-proxy-config")
        path = f"/api/v1/namespaces/oauth2-proxy/configmaps/{name}"
        cfg = restore.save(path)["data"]["oauth2_proxy.cfg"]
        old = 'oidc_issuer_url = "http://dex.auth.svc.cluster.local:5556/dex"'
        assert old in cfg
        cluster.patch(
            path, {"data": {"oauth2_proxy.cfg": cfg.replace(old, f'oidc_issuer_url = "{wrong}"')}}
        )
        expected = "oidc_issuer_url"
    [finding] = [f for f in auth_findings(cluster) if "issuer" in f["finding"]]
    assert finding["severity"] == "error"
    assert (
        wrong in finding["finding"]
        and "http://dex.auth.svc.cluster.local:5556/dex" in finding["finding"]
    )
    assert expected in finding["finding"] and expected in finding["fix"]


def test_the_gateway_expects_another_issuer(
    kubeflow: tuple[str, Cluster], restore: Restore
) -> None:
    release, cluster = kubeflow
    if release == "v1.4.1":
        pytest.skip("1.4 has no RequestAuthentication: oidc-authservice sets kubeflow-userid")
    path = f"{SECURITY}/requestauthentications/dex-jwt"
    ra = restore.save(path)
    rules = ra["spec"]["jwtRules"]
    rules[0]["issuer"] = "https://old-dex.example.com/dex"
    cluster.patch(path, {"spec": {"jwtRules": rules}})
    [finding] = [
        f for f in auth_findings(cluster) if f["object"].startswith("RequestAuthentication")
    ]
    assert "Jwt issuer is not configured" in finding["finding"]
    assert finding["fix"] == "jwtRules issuer: http://dex.auth.svc.cluster.local:5556/dex"


def test_requests_that_never_reach_the_auth_service(
    kubeflow: tuple[str, Cluster], restore: Restore
) -> None:
    release, cluster = kubeflow
    if release == "v1.4.1":
        path = f"{NETWORKING}/namespaces/istio-system/envoyfilters/authn-filter"
        ef = restore.save(path)
        text = json.dumps(ef["spec"]).replace('"kubeflow-userid"', '"x-other-header"')
        cluster.patch(path, {"spec": json.loads(text)})
        [finding] = [f for f in auth_findings(cluster) if f["object"].startswith("EnvoyFilter")]
        assert "kubeflow-userid" in finding["finding"]
        cluster.delete(path)
        [finding] = [f for f in auth_findings(cluster) if f["object"].startswith("EnvoyFilter")]
        assert "no EnvoyFilter adds ext_authz" in finding["finding"]
        return
    mesh_path = "/api/v1/namespaces/istio-system/configmaps/istio"
    mesh = yaml.safe_load(restore.save(mesh_path)["data"]["mesh"])
    mesh["extensionProviders"][0]["envoyExtAuthzHttp"]["headersToUpstreamOnAllow"].remove(
        "authorization"
    )
    cluster.patch(mesh_path, {"data": {"mesh": yaml.safe_dump(mesh)}})
    [finding] = [f for f in auth_findings(cluster) if f["object"].startswith("AuthorizationPolicy")]
    assert "authorization header" in finding["finding"]
    policy = f"{SECURITY}/authorizationpolicies/istio-ingressgateway-oauth2-proxy"
    restore.save(policy)
    cluster.delete(policy)
    [finding] = [f for f in auth_findings(cluster) if f["object"].startswith("AuthorizationPolicy")]
    assert "no CUSTOM AuthorizationPolicy" in finding["finding"]


def test_redirect_url_dex_does_not_know(kubeflow: tuple[str, Cluster], restore: Restore) -> None:
    release, cluster = kubeflow
    path = "/api/v1/namespaces/auth/configmaps/dex"
    config = restore.save(path)["data"]["config.yaml"]
    callback = "/login/oidc" if release == "v1.4.1" else "/oauth2/callback"
    assert f'redirectURIs: ["{callback}"]' in config
    changed = config.replace(f'redirectURIs: ["{callback}"]', 'redirectURIs: ["/elsewhere"]')
    cluster.patch(path, {"data": {"config.yaml": changed}})
    [finding] = [f for f in auth_findings(cluster) if "redirectURIs" in f["finding"]]
    assert callback in finding["finding"] and callback in finding["fix"]
    if release != "v1.4.1":  # the callback path must also be routed by the gateway
        vs = f"{NETWORKING}/namespaces/oauth2-proxy/virtualservices/oauth2-proxy"
        restore.save(vs)
        cluster.delete(vs)
        assert any("no VirtualService" in f["finding"] for f in auth_findings(cluster))


def test_users_dex_cannot_log_in(kubeflow: tuple[str, Cluster], restore: Restore) -> None:
    release, cluster = kubeflow
    path = "/api/v1/namespaces/auth/configmaps/dex"
    config = yaml.safe_load(restore.save(path)["data"]["config.yaml"])
    first = config["staticPasswords"][0]
    config["staticPasswords"] += [
        {**first, "userID": "dup"},  # the same email twice
        {"email": "weak@example.com", "hash": "$2b$04$" + "a" * 53, "username": "w", "userID": "w"},
        {"email": "env@example.com", "hashFromEnv": "DEX_NOWHERE", "username": "e", "userID": "e"},
    ]
    cluster.patch(path, {"data": {"config.yaml": yaml.safe_dump(config)}})
    profile = {
        "apiVersion": "kubeflow.org/v1beta1" if release == "v1.4.1" else "kubeflow.org/v1",
        "kind": "Profile",
        "metadata": {"name": "orphan-team"},
        "spec": {"owner": {"kind": "User", "name": "nobody@example.com"}},
    }
    cluster.apply(profile)
    try:
        found = {f["finding"] for f in auth_findings(cluster)}
        assert any("2 static passwords for user@example.com" in f for f in found), found
        assert any("weak@example.com" in f and "cost 04" in f for f in found), found
        assert any("env@example.com" in f and "DEX_NOWHERE" in f for f in found), found
        assert any("nobody@example.com has no Dex static password" in f for f in found), found
    finally:
        cluster.delete(f"/apis/{profile['apiVersion']}/profiles/orphan-team")
