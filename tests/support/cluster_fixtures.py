"""pytest fixtures for a real Kubernetes API server. Load with
``pytest_plugins = ["tests.support.cluster_fixtures"]``.

- ``kube_cluster`` (session): one :class:`~tests.support.cluster.Cluster` (etcd +
  kube-apiserver, about 3 s to start) for the whole session, stopped at its end;
  kube-controller-manager too when ``KFERRY_CLUSTER_CONTROLLER_MANAGER=1``;
- ``kube`` (function): a :class:`Kube`: the cluster plus a namespace made for this test
  alone (deleted, best effort, after it);
- ``kube_controllers`` (session): the same cluster with kube-controller-manager running
  (namespace deletion, garbage collection, service accounts); started the first time a test
  asks for it, then kept for the rest of the session;
- ``kube_cluster_121`` (session): another :class:`~tests.support.cluster.Cluster`, of
  Kubernetes 1.21 (etcd 3.4.13 + kube-apiserver v1.21.14, no controller manager), which still
  serves apiextensions.k8s.io/v1beta1, rbac.authorization.k8s.io/v1beta1, policy/v1beta1 and
  autoscaling/v2beta2; started the first time a test asks for it (about 4 s), then kept for
  the rest of the session;
- ``kube_121`` (function): a :class:`Kube` on ``kube_cluster_121``.

The binaries come from ``scripts/build-cluster`` (pinned versions, cached under
``.cache/cluster/``; built on first use, which takes about 10 minutes on 2 cores for the
default set, and about 6.5 minutes more for 1.21's; ``scripts/test`` builds both beforehand).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cluster import CONTROLLER_MANAGER_ENV, Cluster, Obj, start_cluster

KUBERNETES_121 = "1.21"

_counter = itertools.count(1)


@dataclass(frozen=True)
class Kube:
    """What the ``kube`` fixture gives a test: the cluster and its own namespace."""

    cluster: Cluster
    namespace: str

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def ns_path(self, resource: str, name: str = "", api_version: str = "v1") -> str:
        """``/api/v1/namespaces/NS/RESOURCE[/NAME]`` (or ``/apis/GROUP/VERSION/...``)."""
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        path = f"{base}/namespaces/{self.namespace}/{resource}"
        return f"{path}/{name}" if name else path

    def apply(self, obj: Obj) -> Obj:
        """:meth:`Cluster.apply` with this test's namespace as the default."""
        return self.cluster.apply(obj, self.namespace)

    def apply_yaml(self, text: str) -> list[Obj]:
        """:meth:`Cluster.apply_yaml` with this test's namespace as the default."""
        return self.cluster.apply_yaml(text, self.namespace)


def unique_namespace(test_name: str) -> str:
    """A DNS label naming the test, unique in the session: ``t3-test-foo-1a2b3c``."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")
    prefix = f"t{next(_counter)}-"
    suffix = f"-{secrets.token_hex(3)}"
    return prefix + slug[: 63 - len(prefix) - len(suffix)].strip("-") + suffix


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One real API server for the whole session."""
    with_controllers = os.environ.get(CONTROLLER_MANAGER_ENV, "") not in ("", "0")
    cluster = start_cluster(
        tmp_path_factory.mktemp("kube-cluster"), controller_manager=with_controllers
    )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kube_controllers(kube_cluster: Cluster) -> Cluster:
    """The session's cluster with kube-controller-manager running."""
    kube_cluster.start_controller_manager()
    return kube_cluster


@pytest.fixture(scope="session")
def kube_cluster_121(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Kubernetes 1.21 API server for the whole session, from the first test that asks."""
    cluster = start_cluster(tmp_path_factory.mktemp("kube-cluster-121"), kubernetes=KUBERNETES_121)
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def _namespaced(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    namespace = unique_namespace(request.node.name)
    cluster.create_namespace(namespace, labels={"kferry.test/namespace": "true"})
    try:
        yield Kube(cluster, namespace)
    finally:
        if cluster.running:
            # Best effort: the test's own result matters more than its cleanup.
            with contextlib.suppress(Exception):
                cluster.delete(f"/api/v1/namespaces/{namespace}")


@pytest.fixture
def kube(kube_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """The session's cluster and a fresh namespace for this test."""
    with _namespaced(kube_cluster, request) as kube:
        yield kube


@pytest.fixture
def kube_121(kube_cluster_121: Cluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """The session's Kubernetes 1.21 cluster and a fresh namespace for this test."""
    with _namespaced(kube_cluster_121, request) as kube:
        yield kube
