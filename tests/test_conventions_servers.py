"""Conventions that need servers: ``--debug`` against real registries logs requests but no
secret; the cluster commands' kubeconfig (a KUBECONFIG list, --context, in-cluster config)
against a real kube-apiserver. The kubeconfig merge rules themselves need no server."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from kferry.errors import InputError
from kferry.kube.client import Kube, kubeconfig_files, load_config, merge_kubeconfigs
from tests.conftest import run_kferry
from tests.support.cluster import Cluster
from tests.support.cluster_fixtures import Kube as KubeNs
from tests.support.images import push_image
from tests.support.proxy import FlakyProxy
from tests.support.registry import Registry


def _kubeconfig(path: Path, context: str, server: str, current: str | None = None, **user: str):
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {"server": server, **({"certificate-authority": "ca.pem"})},
            }
        ],
        "users": [{"name": context, "user": user or {"token": "t"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
    }
    if current:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


# -- kubeconfig merge rules (no server)


def test_merge_first_file_wins_and_paths_resolve_per_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _kubeconfig(tmp_path / "a" / "config", "shared", "https://a.example", current="shared")
    b = _kubeconfig(tmp_path / "b" / "config", "shared", "https://b.example", current="other")
    merged = merge_kubeconfigs([a, b])
    assert merged["current-context"] == "shared"
    [cluster] = merged["clusters"]
    assert cluster["cluster"]["server"] == "https://a.example"
    assert cluster["cluster"]["certificate-authority"] == str((tmp_path / "a" / "ca.pem").resolve())


def test_merge_resolves_exec_command_with_a_path_and_reads_a_repeated_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """client-go@v0.36.3 tools/clientcmd/loader.go:168 (deduplicate) and :612 (exec)."""
    (tmp_path / "k").mkdir()
    api = "client.authentication.k8s.io/v1"
    a = _kubeconfig(tmp_path / "k" / "a", "rel", "https://a.example")
    b = _kubeconfig(tmp_path / "b", "path", "https://b.example")
    for path, command in ((a, "bin/creds"), (b, "creds")):
        doc = yaml.safe_load(path.read_text())
        doc["users"][0]["user"] = {"exec": {"apiVersion": api, "command": command}}
        path.write_text(yaml.safe_dump(doc))
    users = {u["name"]: u["user"] for u in merge_kubeconfigs([a, b])["users"]}
    assert users["rel"]["exec"]["command"] == str((tmp_path / "k" / "bin" / "creds").resolve())
    assert users["path"]["exec"]["command"] == "creds"  # found on PATH, left alone
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}:{a}")
    assert kubeconfig_files(None) == [a, b]


def test_kubeconfig_list_context_in_second_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _kubeconfig(tmp_path / "first", "dev", "https://dev.example", current="dev")
    second = _kubeconfig(tmp_path / "second", "prod", "https://prod.example")
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}::{second}")
    assert load_config().cluster.server == "https://dev.example"
    assert load_config(context="prod").cluster.server == "https://prod.example"
    with pytest.raises(InputError, match="Context 'nope' not found"):
        load_config(context="nope")


def test_cli_unknown_context_is_one_line_exit_2(tmp_path: Path) -> None:
    first = _kubeconfig(tmp_path / "first", "dev", "https://dev.example", current="dev")
    second = _kubeconfig(tmp_path / "second", "prod", "https://prod.example")
    res = run_kferry(
        "status", "-A", "--context", "staging", env={"KUBECONFIG": f"{first}:{second}"}
    )
    assert res.code == 2, res.err
    assert res.err.count("\n") == 1 and "staging" in res.err and str(second) in res.err


def test_no_kubeconfig_and_not_in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(InputError, match="no kubeconfig"):
        load_config(service_account=tmp_path / "sa")


# -- a real kube-apiserver


@pytest.mark.cluster
def test_cli_context_in_the_second_kubeconfig(kube: KubeNs, tmp_path: Path) -> None:
    """kferry apply through KUBECONFIG=decoy:real --context REAL: the object lands."""
    decoy = _kubeconfig(tmp_path / "decoy", "decoy", "https://127.0.0.1:1", current="decoy")
    context = yaml.safe_load(kube.kubeconfig.read_text())["current-context"]
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "conv", "namespace": kube.namespace},
                "data": {"from": "second-file"},
            }
        )
    )
    env = {"KUBECONFIG": f"{decoy}:{kube.kubeconfig}"}
    res = run_kferry("apply", str(manifest), "--context", context, "-o", "json", env=env)
    assert res.code == 0, res.err
    assert kube.cluster.get(kube.ns_path("configmaps", "conv"))["data"] == {"from": "second-file"}


@pytest.mark.cluster
def test_kube_connect_with_a_kubeconfig_list(
    kube_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = _kubeconfig(tmp_path / "decoy", "decoy", "https://127.0.0.1:1", current="decoy")
    context = yaml.safe_load(kube_cluster.kubeconfig.read_text())["current-context"]
    monkeypatch.setenv("KUBECONFIG", f"{decoy}:{kube_cluster.kubeconfig}")
    kube = Kube.connect(context=context)
    try:
        assert kube.server == kube_cluster.server
        ns = kube.get("/api/v1/namespaces/default")
        assert ns is not None and ns["metadata"]["name"] == "default"
    finally:
        kube.close()


@pytest.mark.cluster
def test_in_cluster_config_from_the_service_account(
    kube_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(kube_cluster.token)
    (sa / "namespace").write_text("kube-system")
    (sa / "ca.crt").write_bytes(kube_cluster.ca_file.read_bytes())
    url = urlsplit(kube_cluster.server)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", url.hostname or "")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(url.port))
    kube = Kube.connect(service_account=sa)
    try:
        assert kube.namespace == "kube-system"
        ns = kube.get("/api/v1/namespaces/kube-system")
        assert ns is not None and ns["metadata"]["name"] == "kube-system"
    finally:
        kube.close()


# -- --debug against real registries


@pytest.mark.registry
@pytest.mark.parametrize("kind", ["target_registry", "token_registry"])
def test_debug_logs_requests_but_no_secret(
    kind: str, source_registry: Registry, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target: Registry = request.getfixturevalue(kind)
    assert target.username and target.password and target.ca_file
    img = push_image(source_registry, "conv/app", tag="1")
    res = run_kferry(
        "--debug",
        "mirror",
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        "--to",
        f"{target.host}/proj",
        "--ca-file",
        str(target.ca_file),
        "--username",
        target.username,
        "--password-stdin",
        "--lock",
        str(tmp_path / "lock.json"),
        "-o",
        "json",
        stdin=f"{target.password}\n".encode(),
    )
    assert res.code == 0, res.err[-2000:]
    assert json.loads(res.out)
    err = res.err
    assert f"HTTP Request: PUT https://{target.host}/v2/proj/" in err  # the requests are there
    assert "httpcore" in err  # --debug: connection-level lines too
    basic = base64.b64encode(f"{target.username}:{target.password}".encode()).decode()
    assert target.password not in err
    assert basic not in err
    assert "eyJ" not in err  # no JWT (the token server's tokens) anywhere
    for line in err.splitlines():
        if "authorization" in line.lower() or "bearer " in line.lower():
            assert "<redacted>" in line or "www-authenticate" in line.lower(), line


@pytest.mark.registry
def test_verbose_shows_each_request_and_its_retry(
    flaky_source: FlakyProxy, source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    push_image(source_registry, "conv/retry", tag="1")
    flaky_source.fail_next(1, status=503, retry_after=None, method="GET", path=r"/manifests/")
    res = run_kferry(
        "-v",
        "mirror",
        flaky_source.ref("conv/retry", "1"),
        "--plain-http",
        flaky_source.host,
        "--to",
        f"{target_registry.host}/proj",
        "--ca-file",
        str(target_registry.ca_file),
        "--username",
        str(target_registry.username),
        "--password-stdin",
        "--lock",
        str(tmp_path / "lock.json"),
        stdin=f"{target_registry.password}\n".encode(),
    )
    assert res.code == 0, res.err[-2000:]
    manifest_url = f"http://{flaky_source.host}/v2/conv/retry/manifests/1"
    lines = [line for line in res.err.splitlines() if f"GET {manifest_url} " in line]
    assert len(lines) >= 2, res.err[-2000:]
    assert "retrying" in lines[0] and "HTTP 503" in lines[0] and "200 OK" in lines[1]
    assert "httpcore" not in res.err  # -v: requests only, not connection-level debugging
