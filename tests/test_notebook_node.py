"""The image ``kferry notebook build`` made runs on the real node (kubelet + containerd).

The base is the one of :mod:`tests.test_notebook_build` (CPython 3.11 from Debian 12's
packages, ``scripts/python-rootfs``), pushed to a plain loopback registry; the build adds
markupsafe (compiled) and pycodestyle (pure Python, with a console script) from the package
index and pushes the result to a loopback registry with TLS (its own CA, which the node
trusts the way an admin installs Harbor's CA) and htpasswd, which the node holds no
credentials for: the pod names a ``kubernetes.io/dockerconfigjson`` pull secret, as a
notebook pod in a profile namespace does with a private Harbor project.

The pod's containers run the image's own ``python3 -c 'import ...'`` and its
``pycodestyle`` script; the test reads what they printed from the API server
(``/api/v1/namespaces/NS/pods/NAME/log``, which the API server fetches from the kubelet) and
the digest kubelet pulled from the container status's ``imageID``, which must be the digest
``notebook build`` printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster, start_cluster
from tests.support.cluster_fixtures import unique_namespace
from tests.support.node import (
    NodeError,
    create_pull_secret,
    https_host,
    pull_failure,
    wait_pods,
)
from tests.support.registry import Registry, start_registry
from tests.test_notebook_build import IMPORT_CHECK, REQUIREMENTS, kferry_build, push_base

pytestmark = [
    pytest.mark.node,
    pytest.mark.cluster,
    pytest.mark.registry,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="a node needs root"),
]

# The machine is shared and loaded: first pull of a ~30 MB image plus a Python start.
POD_TIMEOUT = 600.0


@dataclass
class NotebookNode:
    cluster: Cluster
    harbor: Registry  # TLS + htpasswd, reached with a pull secret
    work: Path


@pytest.fixture(scope="module")
def notebook_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookNode]:
    work = tmp_path_factory.mktemp("notebook-node")
    harbor = start_registry(work / "harbor", tls=True, auth="htpasswd")
    cluster = None
    try:
        assert harbor.ca_file is not None
        hosts = work / "certs.d"
        https_host(hosts, harbor.host)
        cluster = start_cluster(
            work / "cluster", node=True, hosts_dir=hosts, registry_cas=[harbor.ca_file]
        )
        yield NotebookNode(cluster, harbor, work)
    finally:
        if cluster is not None:
            cluster.stop()
        harbor.stop()


def _pod(name: str, image: str, secret: str) -> dict[str, Any]:
    def container(cname: str, command: list[str]) -> dict[str, Any]:
        return {"name": cname, "image": image, "command": command}

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "imagePullSecrets": [{"name": secret}],
            "containers": [
                container("python", ["/usr/bin/python3", "-c", IMPORT_CHECK]),
                container("script", ["/usr/local/bin/pycodestyle", "--version"]),
            ],
        },
    }


def test_built_notebook_image_runs_on_the_node(notebook_node, source_registry, tmp_path):
    cluster, harbor = notebook_node.cluster, notebook_node.harbor
    base = push_base(source_registry)
    req = tmp_path / "requirements.txt"
    req.write_text(REQUIREMENTS)
    built = kferry_build(
        base.tag_ref, harbor, "team/notebook:1", "-r", str(req), source=source_registry
    )
    assert built.code == 0, built.err
    digest = json.loads(built.out)["digest"]
    image = f"{harbor.host}/team/notebook:1"

    ns = unique_namespace("notebook-node")
    cluster.create_namespace(ns)
    create_pull_secret(cluster, ns, harbor, "harbor")
    cluster.post(f"/api/v1/namespaces/{ns}/pods", _pod("notebook", image, "harbor"))

    def finished(items: list[dict[str, Any]]) -> bool:
        if not items:
            return False
        failure = pull_failure(items[0])
        if failure is not None:
            raise NodeError(f"the pull failed: {failure}")
        return (items[0].get("status") or {}).get("phase") in ("Succeeded", "Failed")

    (pod,) = wait_pods(cluster, ns, finished, what="the notebook pod", timeout=POD_TIMEOUT)

    def log(container: str) -> str:
        path = f"/api/v1/namespaces/{ns}/pods/notebook/log"
        response = cluster.request("GET", path, params={"container": container})
        text: str = response.text
        assert response.status_code == 200, text
        return text

    printed = log("python")
    assert pod["status"]["phase"] == "Succeeded", (pod["status"], printed, log("script"))
    assert "markupsafe 3.0.2 &lt;a&gt;" in printed, printed
    assert "pycodestyle 2.12.1" in printed, printed
    assert log("script").strip() == "2.12.1"

    statuses = {cs["name"]: cs for cs in pod["status"]["containerStatuses"]}
    assert sorted(statuses) == ["python", "script"]
    for cs in statuses.values():
        assert cs["state"]["terminated"]["exitCode"] == 0, cs
        # what kubelet pulled: the digest notebook build printed, from the private registry
        repo, _, pulled = cs["imageID"].rpartition("@")
        assert (repo, pulled) == (f"{harbor.host}/team/notebook", digest), cs["imageID"]
    assert "/v2/team/notebook/manifests/" in harbor.logs()
