"""`kferry users check`: a real login through a real Dex and a real oauth2-proxy.

The chain is Kubeflow 1.9.1's (see tests/support/authchain.py): Dex v2.41.1 started from the
config.yaml and Secrets that `kferry users add` left in the real API server (so a user added by
kferry is the one who logs in), oauth2-proxy v7.6.0 with the render's oauth2_proxy.cfg and
Deployment environment, and a stand-in dashboard that reads the Profiles of the real API server.
Without istio there is no gateway: oauth2-proxy in reverse-proxy mode in front of the stand-in
plays the gateway and its ext_authz check; the stand-in plays istio's RequestAuthentication
(issuer check, email claim -> kubeflow-userid) and the dashboard's /api/workgroup/env-info.

The 1.4-era oidc-authservice is not tested this way: the Go module proxy here serves no version
of github.com/arrikto/oidc-authservice (403), so it cannot be built.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kferry.users import profile_name_for
from tests.conftest import Result, run_kferry
from tests.support.authchain import Dashboard, Gateway, running_gateway
from tests.support.cluster_fixtures import Kube
from tests.support.dex import DexServer, running_dex
from tests.support.registry import new_ca
from tests.test_users import PROFILES, Site, delete_profiles, install, render

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RELEASE = "v1.9.1"
IN_CLUSTER_ISSUER = "http://dex.auth.svc.cluster.local:5556/dex"  # the render's


@dataclass
class Chain:
    site: Site
    dex: DexServer
    dashboard: Dashboard
    tmp: Path

    def profiles_of(self, email: str) -> list[str]:
        items = self.site.cluster.get(PROFILES).get("items") or []
        return sorted(p["metadata"]["name"] for p in items if p["spec"]["owner"]["name"] == email)

    @contextlib.contextmanager
    def gateway(self, name: str = "gw", **kwargs: Any) -> Iterator[Gateway]:
        with running_gateway(
            list(render(RELEASE)), self.dex, self.dashboard, self.tmp / name, **kwargs
        ) as gateway:
            yield gateway


def check(gateway: Gateway, email: str, password: str, *args: str) -> Result:
    res = run_kferry(
        "users", "check", email, "--url", gateway.url, "--password-stdin", *args,
        stdin=f"{password}\n".encode(),
    )  # fmt: skip
    assert password not in res.out and password not in res.err
    return res


def check_json(gateway: Gateway, email: str, password: str) -> tuple[int, dict[str, Any]]:
    res = check(gateway, email, password, "-o", "json")
    assert res.code in (0, 1), res.err
    out: dict[str, Any] = json.loads(res.out)
    return res.code, out


ALICE_PASSWORD = "alice's long password"
BOB_PASSWORD = "bob-has-no-profile"


@pytest.fixture
def chain(kube: Kube, tmp_path: Path) -> Iterator[Chain]:
    """alice (added with a Profile) and bob (added, then his Profile deleted) in Dex's
    config in the cluster; Dex (re)started from it, as its restart would."""
    site = install(kube, RELEASE)
    try:
        for who, password in (("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)):
            assert site.add(site.email(who), password).code == 0
        site.cluster.delete(f"{PROFILES}/{profile_name_for(site.email('bob'))}")
        with running_dex(site.config_text(), site.env(), tmp_path / "dex") as dex:
            holder: list[Chain] = []
            dashboard = Dashboard(dex.issuer, lambda email: holder[0].profiles_of(email))
            holder.append(Chain(site, dex, dashboard.start(), tmp_path))
            try:
                yield holder[0]
            finally:
                dashboard.stop()
    finally:
        delete_profiles(kube.cluster, site.token)


def test_a_user_added_by_users_add_logs_in(chain: Chain) -> None:
    alice = chain.site.email("alice")
    with chain.gateway() as gateway:
        code, out = check_json(gateway, alice, ALICE_PASSWORD)
        table = check(gateway, alice, ALICE_PASSWORD)
    assert code == 0, out["failure"]
    assert out["loggedIn"] is True and out["failure"] is None
    assert out["user"] == alice
    assert out["namespaces"] == [{"namespace": profile_name_for(alice), "role": "owner"}]
    steps = [h["step"] for h in out["hops"]]
    assert steps[0] == "gateway" and steps[-1] == "dashboard"
    for step in ("auth service", "dex", "dex login", "callback"):
        assert step in steps
    assert all(h["host"] == gateway.url.removeprefix("http://") for h in out["hops"])
    assert [h["status"] for h in out["hops"]][-1] == 200
    # the stand-in saw the kubeflow-userid the chain derived from Dex's token
    assert alice in chain.dashboard.seen_users
    assert table.code == 0, table.out
    assert f"logged in as {alice}" in table.out and "/oauth2/callback" in table.out


def test_wrong_password_names_the_dex_login(chain: Chain) -> None:
    with chain.gateway() as gateway:
        code, out = check_json(gateway, chain.site.email("alice"), "not alice's password")
    assert code == 1
    failure = out["failure"]
    assert (failure["step"], failure["kind"]) == ("dex login", "wrong-password")
    assert out["hops"][failure["hop"] - 1]["method"] == "POST"
    assert "--reset-password" in failure["fix"]


def test_issuer_the_auth_service_does_not_expect(chain: Chain) -> None:
    # Dex answers as its loopback issuer; oauth2-proxy still expects the render's in-cluster one
    with chain.gateway(issuer=IN_CLUSTER_ISSUER) as gateway:
        code, out = check_json(gateway, chain.site.email("alice"), ALICE_PASSWORD)
        assert "id token issued by a different provider" in gateway.log()
    assert code == 1
    failure = out["failure"]
    assert (failure["step"], failure["kind"]) == ("callback", "issuer")
    assert out["hops"][failure["hop"] - 1]["status"] == 500
    assert chain.dex.issuer in failure["message"]
    assert "oidc_issuer_url" in failure["fix"]


def test_issuer_the_gateway_does_not_expect(chain: Chain) -> None:
    chain.dashboard.issuer = IN_CLUSTER_ISSUER  # RequestAuthentication dex-jwt not updated
    with chain.gateway() as gateway:
        code, out = check_json(gateway, chain.site.email("alice"), ALICE_PASSWORD)
    assert code == 1
    failure = out["failure"]
    # the gateway's JWT check answers the first request after the callback
    assert (failure["step"], failure["kind"]) == ("gateway", "issuer")
    assert out["hops"][failure["hop"] - 2]["step"] == "callback"
    assert out["hops"][failure["hop"] - 1]["status"] == 401
    assert "RequestAuthentication" in failure["fix"]


def test_secure_cookie_over_plain_http(chain: Chain) -> None:
    with chain.gateway(parameters={"FORCE_HTTPS": "true"}) as gateway:
        code, out = check_json(gateway, chain.site.email("alice"), ALICE_PASSWORD)
    assert code == 1
    failure = out["failure"]
    assert (failure["step"], failure["kind"]) == ("auth service", "secure-cookie")
    assert "oauth2_proxy_kubeflow_csrf" in failure["message"]
    assert "--fix insecure-cookies" in failure["fix"] and "FORCE_HTTPS" in failure["fix"]


def test_session_cookie_that_does_not_come_back_is_a_loop(chain: Chain) -> None:
    # the session cookie is scoped to /oauth2/: the app's pages never get it
    with chain.gateway(flags=("--cookie-path=/oauth2/",)) as gateway:
        code, out = check_json(gateway, chain.site.email("alice"), ALICE_PASSWORD)
    assert code == 1
    failure = out["failure"]
    assert (failure["step"], failure["kind"]) == ("gateway", "redirect-loop")
    assert [h["step"] for h in out["hops"]].count("callback") == 1
    assert "cookie_path" in failure["fix"]


def test_user_without_a_profile(chain: Chain) -> None:
    bob = chain.site.email("bob")
    with chain.gateway() as gateway:
        code, out = check_json(gateway, bob, BOB_PASSWORD)
    assert code == 1
    failure = out["failure"]
    assert (failure["step"], failure["kind"]) == ("dashboard", "no-profile")
    assert out["user"] == bob and out["namespaces"] == []
    assert f"kferry users add {bob}" in failure["fix"]


def test_tls_gateway_needs_its_ca(chain: Chain) -> None:
    ca = new_ca(chain.tmp / "ca")
    cert, key = ca.issue_server_cert(chain.tmp / "ca", "gateway")
    alice = chain.site.email("alice")
    with chain.gateway(tls=(cert, key, ca.cert_file)) as gateway:
        assert gateway.url.startswith("https://")
        code, out = check_json(gateway, alice, ALICE_PASSWORD)
        trusted = check(
            gateway, alice, ALICE_PASSWORD, "--ca-file", str(ca.cert_file), "-o", "json"
        )
    assert code == 1
    failure = out["failure"]
    assert (failure["hop"], failure["step"], failure["kind"]) == (1, "gateway", "tls")
    assert "--ca-file" in failure["fix"]
    assert trusted.code == 0, trusted.out
    assert json.loads(trusted.out)["user"] == alice
