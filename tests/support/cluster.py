"""A real Kubernetes control plane on loopback, like controller-runtime's envtest.

:func:`start_cluster` generates a CA, serving certificates, an admin client certificate
(``O=system:masters``), a static admin token and a service-account signing key, starts
``etcd`` and ``kube-apiserver`` (RBAC, TokenRequest enabled) on free 127.0.0.1 ports, waits
for ``/readyz`` and writes a kubeconfig. ``kube-controller-manager`` (namespace deletion,
garbage collection, service accounts) is started on request, then or later. The binaries
come from ``scripts/build-cluster`` (pinned versions, built once into ``.cache/cluster/``), or
from the directory ``KFERRY_CLUSTER_BIN`` names.

Two Kubernetes versions: 1.37 (the default: etcd 3.7, kube-apiserver and
kube-controller-manager v1.37.2) and, with ``kubernetes="1.21"``, etcd 3.4.13 and
kube-apiserver v1.21.14 alone (no controller manager), for manifests of that era: it still
serves apiextensions.k8s.io/v1beta1, rbac.authorization.k8s.io/v1beta1, policy/v1beta1 and
autoscaling/v2beta2. Its binaries come from ``scripts/build-cluster --kubernetes 1.21``
(``.cache/cluster/bin-1.21``), or from the directory ``KFERRY_CLUSTER_BIN_1_21`` names.

With ``node=True`` (``--node``; 1.37 only) a node joins: kube-controller-manager,
kube-scheduler, a containerd of its own and a kubelet with a CNI bridge pod network
(:mod:`tests.support.node`), so pods run and pull images; :meth:`Cluster.stop` removes all of
it.

Everything stays on loopback: a Service that a webhook, a CRD's conversion webhook or an
APIService names is reached through its Endpoints (``--enable-aggregator-routing``), of which
there are none, so such a call fails at once instead of dialing the Service's ClusterIP.

The :class:`Cluster` helpers talk to the API with httpx (kubectl may be absent): ``get``,
``post``, ``put``, ``patch``, ``delete``, ``apply``/``apply_yaml`` (create, or replace what
exists: test setup, not server-side apply), ``wait_established``, ``write_status``.

Also the command line behind ``scripts/test-cluster``::

    python -m tests.support.cluster start [--dir DIR] [--with-controller-manager]
                                          [--kubernetes 1.37|1.21]
                                          [--node [--hosts-dir DIR] [--registry-ca FILE]...
                                           [--registry-auth CONFIG_JSON]]
    python -m tests.support.cluster stop [--dir DIR]
    python -m tests.support.cluster status [--dir DIR]

``start`` prints ``export KUBECONFIG=...`` as its last line; the processes it starts outlive
it (their pids are in ``DIR/cluster.json``) until ``stop``. In-process clusters (tests) are
tied to the process that started them: they are stopped at exit, and killed by the kernel
(``setpriv --pdeathsig``) if it dies.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import markers
from tests.support.node import (
    NODE_NAME,
    NODE_STATE,
    NodeInfo,
    auths_from_docker_config,
    load_node,
    start_node,
    stop_node,
)
from tests.support.pki import (
    issue_client_cert,
    new_ca,
    pem_key,
    tls_context,
    write_secret,
)
from tests.support.processes import LiveSet, Process, free_port, free_ports, launch_process

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-cluster"
DEFAULT_DIR = ROOT / ".cache" / "test-cluster" / "run"
STATE_FILE = "cluster.json"
CONTROLLER_MANAGER_ENV = "KFERRY_CLUSTER_CONTROLLER_MANAGER"

# Kubernetes minor version -> the components scripts/build-cluster builds for it.
COMPONENTS = {
    "1.37": ("etcd", "kube-apiserver", "kube-controller-manager"),
    "1.21": ("etcd", "kube-apiserver"),
}
DEFAULT_KUBERNETES = "1.37"

ADMIN_USER = "kferry-admin"
ADMIN_GROUP = "system:masters"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The serving certificate's names: loopback, and what in-cluster clients would use.
APISERVER_HOSTS = (
    "127.0.0.1",
    "localhost",
    "10.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# ServiceAccount admission makes every pod wait for its namespace's "default" service account,
# which only kube-controller-manager creates; off, as in envtest.
DISABLED_ADMISSION_PLUGINS = ("ServiceAccount",)
START_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0

Obj = dict[str, Any]
CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class ClusterError(RuntimeError):
    """A failed API call (``status`` is the HTTP status, ``reason`` the Status reason) or a
    control plane that would not start."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Binaries and PKI


def _check_kubernetes(kubernetes: str) -> str:
    if kubernetes not in COMPONENTS:
        known = ", ".join(COMPONENTS)
        raise ClusterError(f"no test cluster for Kubernetes {kubernetes!r} (known: {known})")
    return kubernetes


def bin_override_env(kubernetes: str = DEFAULT_KUBERNETES) -> str:
    """The variable naming a directory of ready binaries for ``kubernetes``:
    ``KFERRY_CLUSTER_BIN`` (the default version), ``KFERRY_CLUSTER_BIN_1_21``."""
    if kubernetes == DEFAULT_KUBERNETES:
        return "KFERRY_CLUSTER_BIN"
    return "KFERRY_CLUSTER_BIN_" + kubernetes.replace(".", "_")


def cluster_bin(kubernetes: str = DEFAULT_KUBERNETES) -> Path:
    """The directory holding the binaries of Kubernetes ``kubernetes`` (``COMPONENTS``): runs
    ``scripts/build-cluster --kubernetes VERSION`` (instant when cached; builds the pinned
    versions of that set, and of no other, otherwise)."""
    override = os.environ.get(bin_override_env(_check_kubernetes(kubernetes)))
    if override:
        return Path(override)
    proc = subprocess.run(
        [str(BUILD_SCRIPT), "--kubernetes", kubernetes],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = proc.stdout.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ClusterError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode}")
    return Path(lines[-1])


@dataclass(frozen=True)
class _Pki:
    ca_file: Path
    serving_cert: Path
    serving_key: Path
    client_cert: Path
    client_key: Path
    sa_key: Path
    sa_pub: Path
    token_file: Path
    token: str


def _make_pki(directory: Path) -> _Pki:
    ca = new_ca(directory, name="kferry test cluster CA")
    serving_cert, serving_key = ca.issue_server_cert(directory, "apiserver", APISERVER_HOSTS)
    client_cert, client_key = issue_client_cert(ca, directory, "admin", ADMIN_USER, [ADMIN_GROUP])
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key = write_secret(directory / "sa.key", pem_key(sa))
    sa_pub = directory / "sa.pub"
    sa_pub.write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    token = secrets.token_urlsafe(32)
    token_file = write_secret(
        directory / "tokens.csv", f'{token},{ADMIN_USER},{ADMIN_USER},"{ADMIN_GROUP}"\n'.encode()
    )
    return _Pki(
        ca.cert_file, serving_cert, serving_key, client_cert, client_key, sa_key, sa_pub,
        token_file, token,
    )  # fmt: skip


def write_kubeconfig(
    path: Path, server: str, ca_file: Path, client_cert: Path, client_key: Path
) -> Path:
    """A kubeconfig (context ``kferry-test``, namespace ``default``) with the CA and the
    client certificate embedded, so it can be copied anywhere."""

    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kferry-test",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_file)},
            }
        ],
        "users": [
            {
                "name": ADMIN_USER,
                "user": {
                    "client-certificate-data": b64(client_cert),
                    "client-key-data": b64(client_key),
                },
            }
        ],
        "contexts": [
            {
                "name": "kferry-test",
                "context": {"cluster": "kferry-test", "user": ADMIN_USER, "namespace": "default"},
            }
        ],
        "current-context": "kferry-test",
    }
    return write_secret(path, yaml.safe_dump(config, sort_keys=False).encode())


# --------------------------------------------------------------------------------------------
# Processes


def _wait_ready(
    process: Process,
    url: str,
    *,
    verify: ssl.SSLContext | bool,
    timeout: float = START_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(verify=verify, timeout=5.0) as probe:
        while True:
            if not process.alive():
                raise ClusterError(
                    f"{process.name} exited before {url} answered; its log "
                    f"({process.log_file}) ends:\n{process.log_tail()}"
                )
            try:
                response = probe.get(url)
                if response.status_code == 200:
                    return
                last = f"{response.status_code}: {response.text[-2000:]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{process.name} did not answer {url} within {timeout:.0f} s (last: {last}); "
                    f"its log ({process.log_file}) ends:\n{process.log_tail()}"
                )
            time.sleep(0.05)


_LIVE = LiveSet()


# --------------------------------------------------------------------------------------------
# The cluster


@dataclass(eq=False)
class Cluster:
    """A running control plane. Build it with :func:`start_cluster` (or :func:`attach`)."""

    directory: Path
    server: str
    kubeconfig: Path
    ca_file: Path
    client_cert: Path
    client_key: Path
    token: str
    sa_key: Path
    etcd_url: str
    bin_dir: Path
    tied: bool
    # The Kubernetes minor version (a key of COMPONENTS): "1.37" or "1.21".
    kubernetes: str = DEFAULT_KUBERNETES
    processes: dict[str, Process] = field(default_factory=dict)
    # Seconds from start_cluster's call to /readyz: everything (PKI, etcd, kube-apiserver).
    start_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    # The node (containerd, kubelet, kube-scheduler) when started with one: tests/support/node.
    node: NodeInfo | None = None
    _client: httpx.Client | None = field(default=None, repr=False)
    _discovery: dict[str, list[Obj]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- life cycle

    @property
    def running(self) -> bool:
        names = ("etcd", "kube-apiserver")
        return all(name in self.processes and self.processes[name].alive() for name in names)

    @property
    def has_controller_manager(self) -> bool:
        process = self.processes.get("kube-controller-manager")
        return process is not None and process.alive()

    def stop(self) -> None:
        """Stop every process (controller manager, API server, etcd, in that order) and
        forget the state file. Idempotent."""
        if (self.directory / NODE_STATE).exists() or "kubelet" in self.processes:
            stop_node(self)
        if self._client is not None:
            self._client.close()
            self._client = None
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            process = self.processes.get(name)
            if process is not None and process.is_ours(self.directory):
                process.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.directory / STATE_FILE).unlink()
        _LIVE.discard(self)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_controller_manager(self, timeout: float = START_TIMEOUT) -> float:
        """Start kube-controller-manager (all default controllers, no leader election) if it is
        not running, and wait for its /healthz. Returns the seconds it took (0 if running).
        Only for Kubernetes 1.37: there is no controller manager for 1.21."""
        if self.has_controller_manager:
            return 0.0
        if "kube-controller-manager" not in COMPONENTS[self.kubernetes]:
            raise ClusterError(f"no kube-controller-manager for Kubernetes {self.kubernetes}")
        started = time.perf_counter()
        port = free_port()
        cert_dir = self.directory / "kube-controller-manager"
        cert_dir.mkdir(parents=True, exist_ok=True)
        # No --authentication/authorization-kubeconfig: delegated auth would watch for a
        # front-proxy CA this API server does not have; /healthz is allowed anyway.
        args = [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={cert_dir}",
            f"--service-account-private-key-file={self.sa_key}",
            f"--root-ca-file={self.ca_file}",
            "--use-service-account-credentials=false",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        ]
        process = launch_process(
            "kube-controller-manager",
            self.bin_dir / "kube-controller-manager",
            args,
            self.directory / "logs" / "kube-controller-manager.log",
            tied=self.tied,
        )
        self.processes[process.name] = process
        self._save_state()
        try:
            _wait_ready(process, f"https://127.0.0.1:{port}/healthz", verify=False, timeout=timeout)
        except BaseException:
            process.stop()
            raise
        seconds = time.perf_counter() - started
        self.timings["kube-controller-manager"] = seconds
        return seconds

    def start_node(
        self,
        *,
        hosts_dir: Path | None = None,
        registry_cas: Sequence[Path] = (),
        registry_auths: Mapping[str, tuple[str, str]] | None = None,
    ) -> NodeInfo:
        """Add the node (kube-controller-manager, containerd, kubelet, kube-scheduler), or
        restart it with this configuration; waits until it is Ready."""
        if self.kubernetes != DEFAULT_KUBERNETES:
            raise ClusterError(f"no node for Kubernetes {self.kubernetes}")
        self.node = start_node(
            self,
            hosts_dir=hosts_dir,
            registry_cas=list(registry_cas),
            registry_auths=registry_auths,
        )
        return self.node

    def _save_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ca_file": str(self.ca_file),
            "client_cert": str(self.client_cert),
            "client_key": str(self.client_key),
            "token": self.token,
            "sa_key": str(self.sa_key),
            "etcd_url": self.etcd_url,
            "bin_dir": str(self.bin_dir),
            "kubernetes": self.kubernetes,
            "pids": {name: p.pid for name, p in self.processes.items()},
        }
        write_secret(self.directory / STATE_FILE, json.dumps(state, indent=2).encode())

    def logs(self, name: str = "kube-apiserver") -> str:
        """The log of one process (``etcd``, ``kube-apiserver``, ``kube-controller-manager``)."""
        try:
            return (self.directory / "logs" / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- raw API access

    def tls_context(self, *, admin: bool = True) -> ssl.SSLContext:
        """An SSL context trusting this cluster's CA, presenting the admin client certificate
        unless ``admin=False`` (then the request is anonymous, or carries a bearer token)."""
        if admin:
            return tls_context(self.ca_file, self.client_cert, self.client_key)
        return tls_context(self.ca_file)

    def client(self, *, admin: bool = True, **kwargs: Any) -> httpx.Client:
        """A new httpx client for the API server: base URL, its CA, and the admin certificate
        (``admin=False``: none, for anonymous or bearer-token requests)."""
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.server, verify=self.tls_context(admin=admin), **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call as the admin; the response whatever its status."""
        with self._lock:
            if self._client is None:
                self._client = self.client()
            client = self._client
        return client.request(method, path, **kwargs)

    def _call(self, method: str, path: str, **kwargs: Any) -> Obj:
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _api_error(method, path, response)
        if not response.content:
            return {}
        body: Obj = response.json()
        return body

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Obj:
        """GET ``path`` (e.g. ``/api/v1/namespaces/x``): the decoded JSON, or ClusterError."""
        return self._call("GET", path, params=params)

    def exists(self, path: str) -> bool:
        response = self.request("GET", path)
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise _api_error("GET", path, response)
        return True

    def post(self, path: str, body: Obj) -> Obj:
        return self._call("POST", path, json=body)

    def put(self, path: str, body: Obj) -> Obj:
        return self._call("PUT", path, json=body)

    def patch(
        self, path: str, body: Obj, content_type: str = "application/merge-patch+json"
    ) -> Obj:
        """PATCH ``path``; a JSON merge patch unless ``content_type`` says otherwise
        (``application/strategic-merge-patch+json``, ``application/json-patch+json``)."""
        return self._call(
            "PATCH", path, content=json.dumps(body), headers={"Content-Type": content_type}
        )

    def delete(self, path: str, *, missing_ok: bool = True) -> Obj | None:
        """DELETE ``path`` (background propagation); None if it was already gone."""
        response = self.request("DELETE", path, params={"propagationPolicy": "Background"})
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise _api_error("DELETE", path, response)
        body: Obj = response.json()
        return body

    # -- discovery and paths

    def api_resources(self, api_version: str, *, refresh: bool = False) -> list[Obj]:
        """The resources of a group version (``v1``, ``apps/v1``, ...) from discovery."""
        with self._lock:
            cached = None if refresh else self._discovery.get(api_version)
        if cached is not None:
            return cached
        resources: list[Obj] = self.get(_group_version_path(api_version)).get("resources", [])
        with self._lock:
            self._discovery[api_version] = resources
        return resources

    def resource_for(
        self, api_version: str, kind: str, *, timeout: float = 10.0
    ) -> tuple[str, bool]:
        """``(plural, namespaced)`` for a kind. Waits up to ``timeout`` for discovery to list
        it (a CRD's kind appears shortly after it is Established)."""
        deadline = time.monotonic() + timeout
        refresh = False
        while True:
            try:
                resources = self.api_resources(api_version, refresh=refresh)
            except ClusterError as exc:
                if exc.status != 404:
                    raise
                resources = []
            for resource in resources:
                if resource.get("kind") == kind and "/" not in resource["name"]:
                    return resource["name"], bool(resource["namespaced"])
            if time.monotonic() > deadline:
                raise ClusterError(f"the API server serves no {kind} in {api_version}", 404)
            refresh = True
            time.sleep(0.1)

    def path_for(self, obj: Obj, namespace: str | None = None, *, name: bool = True) -> str:
        """The API path of ``obj`` (or of its collection with ``name=False``);
        ``namespace`` is used when a namespaced object names none (else ``default``)."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural, namespaced = self.resource_for(api_version, kind)
        path = _group_version_path(api_version)
        if namespaced:
            meta = obj.get("metadata", {})
            path += f"/namespaces/{meta.get('namespace') or namespace or 'default'}"
        path += f"/{plural}"
        if name:
            path += f"/{obj['metadata']['name']}"
        return path

    # -- test setup

    def apply(self, obj: Obj, namespace: str | None = None) -> Obj:
        """Create ``obj``, or replace it (PUT with the current resourceVersion) if it exists.
        Plain create-or-replace for test setup, not server-side apply. A namespaced object
        that names no namespace goes to ``namespace`` (else ``default``). A CRD is waited for
        until it is Established and served. Returns what the server stored."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        _, namespaced = self.resource_for(obj["apiVersion"], obj["kind"])
        if namespaced:
            meta["namespace"] = meta.get("namespace") or namespace or "default"
        response = self.request("POST", self.path_for(obj, name=False), json=obj)
        if response.status_code == 409:
            path = self.path_for(obj)
            for _ in range(10):
                current = self.get(path)
                meta["resourceVersion"] = current["metadata"]["resourceVersion"]
                response = self.request("PUT", path, json=obj)
                if response.status_code != 409:
                    break
        if response.status_code >= 400:
            raise _api_error("APPLY", self.path_for(obj), response)
        stored: Obj = response.json()
        if obj["kind"] == "CustomResourceDefinition" and obj["apiVersion"].startswith(
            "apiextensions.k8s.io/"
        ):
            self.wait_established(meta["name"])
        return stored

    def apply_yaml(self, text: str, namespace: str | None = None) -> list[Obj]:
        """:meth:`apply` every object of a (multi-document) YAML text, in order; ``List``
        kinds are unpacked and empty documents skipped."""
        stored: list[Obj] = []
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            items = doc["items"] if str(doc.get("kind", "")).endswith("List") else [doc]
            for item in items:
                stored.append(self.apply(item, namespace))
        return stored

    def wait_established(self, crd_name: str, timeout: float = 30.0) -> Obj:
        """Wait until the CRD ``crd_name`` (``plural.group``) is Established with its names
        accepted and discovery lists its kind in every served version. Returns the CRD."""
        path = f"{CRD_API}/{crd_name}"
        deadline = time.monotonic() + timeout
        while True:
            crd = self.get(path)
            conditions = {
                c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []
            }
            if conditions.get("Established") == "True" and conditions.get("NamesAccepted") == (
                "True"
            ):
                break
            if time.monotonic() > deadline:
                raise ClusterError(f"CRD {crd_name} not Established within {timeout} s: {crd}")
            time.sleep(0.05)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                remaining = max(deadline - time.monotonic(), 1.0)
                self.resource_for(f"{group}/{version['name']}", kind, timeout=remaining)
        return crd

    def write_status(self, path: str, status: Obj) -> Obj:
        """Replace the status of the object at ``path`` through its status subresource (what a
        controller does); the rest of the object is untouched. Returns the stored object."""
        for _ in range(10):
            current = self.get(path)
            current["status"] = status
            response = self.request("PUT", f"{path}/status", json=current)
            if response.status_code != 409:
                break
        if response.status_code >= 400:
            raise _api_error("PUT", f"{path}/status", response)
        stored: Obj = response.json()
        return stored

    def wait_for(
        self, check: Callable[[], bool], what: str, timeout: float = 30.0, interval: float = 0.1
    ) -> None:
        """Poll ``check`` until it is true, or raise ClusterError naming ``what``."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)

    def wait_gone(self, path: str, timeout: float = 60.0) -> None:
        """Wait until GET ``path`` answers 404 (deleted, finalizers done)."""
        self.wait_for(lambda: not self.exists(path), f"{path} to be gone", timeout)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> Obj:
        body: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        if labels:
            body["metadata"]["labels"] = dict(labels)
        return self.post("/api/v1/namespaces", body)


def _group_version_path(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def _api_error(method: str, path: str, response: httpx.Response) -> ClusterError:
    reason, message = "", response.text[:2000]
    with contextlib.suppress(ValueError, AttributeError):
        body = response.json()
        reason, message = body.get("reason", ""), body.get("message", message)
    return ClusterError(
        f"{method} {path}: {response.status_code} {reason}: {message}", response.status_code, reason
    )


# --------------------------------------------------------------------------------------------
# Starting, and finding a started cluster again


def _clean(directory: Path) -> None:
    """Remove what an earlier start left in ``directory`` (only our own entries)."""
    for name in ("etcd", "pki", "logs", "kube-controller-manager"):
        shutil.rmtree(directory / name, ignore_errors=True)
    for name in ("kubeconfig", STATE_FILE):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


def start_cluster(
    directory: Path,
    *,
    controller_manager: bool = False,
    tied: bool = True,
    bin_dir: Path | None = None,
    timeout: float = START_TIMEOUT,
    kubernetes: str = DEFAULT_KUBERNETES,
    node: bool = False,
    hosts_dir: Path | None = None,
    registry_cas: Sequence[Path] = (),
    registry_auths: Mapping[str, tuple[str, str]] | None = None,
) -> Cluster:
    """Start etcd and kube-apiserver with state in ``directory`` (emptied of an earlier
    start's files first) and wait until ``/readyz`` answers; optionally kube-controller-manager
    too (or later: :meth:`Cluster.start_controller_manager`). ``tied``: stop with this process
    (tests); ``False`` for a cluster that outlives it (``scripts/test-cluster start``).
    ``kubernetes``: ``"1.37"`` (the default) or ``"1.21"`` (etcd 3.4 and kube-apiserver
    v1.21.14; no controller manager). ``node``: also a node (kube-controller-manager,
    kube-scheduler, containerd, kubelet: :func:`tests.support.node.start_node`, which
    ``hosts_dir``, ``registry_cas`` and ``registry_auths`` configure)."""
    markers.started(markers.CLUSTER, "a kube-apiserver")
    started = time.perf_counter()
    _check_kubernetes(kubernetes)
    if controller_manager and "kube-controller-manager" not in COMPONENTS[kubernetes]:
        raise ClusterError(f"no kube-controller-manager for Kubernetes {kubernetes}")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    running = attach(directory)
    if running is not None and running.processes:
        pids = {name: p.pid for name, p in running.processes.items()}
        raise ClusterError(f"a cluster is running in {directory} ({pids}): stop it first")
    _clean(directory)
    bin_dir = bin_dir or cluster_bin(kubernetes)
    for name in COMPONENTS[kubernetes]:
        if not (bin_dir / name).exists():
            raise ClusterError(
                f"{bin_dir / name} is missing: run scripts/build-cluster --kubernetes {kubernetes}"
            )
    (directory / "logs").mkdir()
    pki = _make_pki(directory / "pki")
    timings = {"pki": time.perf_counter() - started}

    etcd_port, peer_port, api_port = free_ports(3)
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = write_kubeconfig(
        directory / "kubeconfig", server, pki.ca_file, pki.client_cert, pki.client_key
    )
    cluster = Cluster(
        directory=directory,
        server=server,
        kubeconfig=kubeconfig,
        ca_file=pki.ca_file,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
        token=pki.token,
        sa_key=pki.sa_key,
        etcd_url=etcd_url,
        bin_dir=bin_dir,
        tied=tied,
        kubernetes=kubernetes,
        timings=timings,
    )
    if tied:
        _LIVE.add(cluster)
    try:
        phase = time.perf_counter()
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = launch_process(
            "etcd",
            bin_dir / "etcd",
            [
                "--name=kferry-test",
                f"--data-dir={directory / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=kferry-test={peer_url}",
                "--unsafe-no-fsync=true",  # throwaway data: speed over durability
                # One member: short timers only make its first election quicker (~0.5 s).
                "--heartbeat-interval=10",
                "--election-timeout=100",
                "--log-level=warn",
                # etcd 3.4 logs with capnslog unless told otherwise, and ignores --log-level.
                *(["--logger=zap"] if kubernetes == "1.21" else []),
            ],
            directory / "logs" / "etcd.log",
            tied=tied,
        )
        cluster.processes["etcd"] = etcd
        cluster._save_state()
        _wait_ready(etcd, f"{etcd_url}/health", verify=False, timeout=timeout)
        timings["etcd"] = time.perf_counter() - phase

        phase = time.perf_counter()
        apiserver = launch_process(
            "kube-apiserver",
            bin_dir / "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The default (lease) reconciler refuses a loopback address for the
                # `kubernetes` Service's endpoints; nothing here needs them.
                "--endpoint-reconciler-type=none",
                # Reach a Service named by a webhook, a CRD's conversion webhook or an
                # APIService through its Endpoints, not its ClusterIP: there are none (no
                # pods), so such calls fail here at once, where a ClusterIP (10.0.0.x, not
                # loopback) would be dialed off this machine.
                "--enable-aggregator-routing=true",
                f"--secure-port={api_port}",
                f"--cert-dir={directory / 'pki'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_file}",
                # How it calls a node's kubelet (logs, exec): as the admin.
                f"--kubelet-client-certificate={pki.client_cert}",
                f"--kubelet-client-key={pki.client_key}",
                # By its InternalIP (the node's bridge address), never by a host name: a name
                # would be looked up in DNS, off this machine.
                "--kubelet-preferred-address-types=InternalIP",
                f"--token-auth-file={pki.token_file}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=RBAC",
                f"--disable-admission-plugins={','.join(DISABLED_ADMISSION_PLUGINS)}",
                "--allow-privileged=true",
                "--profiling=false",
            ],
            directory / "logs" / "kube-apiserver.log",
            tied=tied,
        )
        cluster.processes["kube-apiserver"] = apiserver
        cluster._save_state()
        _wait_ready(
            apiserver,
            f"{server}/readyz",
            verify=tls_context(pki.ca_file, pki.client_cert, pki.client_key),
            timeout=timeout,
        )
        timings["kube-apiserver"] = time.perf_counter() - phase
        cluster.start_seconds = time.perf_counter() - started
        if controller_manager:
            cluster.start_controller_manager(timeout=timeout)
        if node:
            cluster.start_node(
                hosts_dir=hosts_dir, registry_cas=registry_cas, registry_auths=registry_auths
            )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def attach(directory: Path) -> Cluster | None:
    """The cluster a ``scripts/test-cluster start`` left running in ``directory``, or None
    if there is none (no state file). Its processes may have died: check ``running``."""
    directory = directory.resolve()
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    logs = directory / "logs"
    cluster = Cluster(
        directory=directory,
        server=state["server"],
        kubeconfig=Path(state["kubeconfig"]),
        ca_file=Path(state["ca_file"]),
        client_cert=Path(state["client_cert"]),
        client_key=Path(state["client_key"]),
        token=state["token"],
        sa_key=Path(state["sa_key"]),
        etcd_url=state["etcd_url"],
        bin_dir=Path(state["bin_dir"]),
        tied=False,
        kubernetes=state.get("kubernetes", DEFAULT_KUBERNETES),
    )
    for name, pid in state["pids"].items():
        process = Process(name, int(pid), logs / f"{name}.log")
        if process.is_ours(directory):
            cluster.processes[name] = process
    cluster.node = load_node(directory)
    return cluster


# --------------------------------------------------------------------------------------------
# Command line (scripts/test-cluster)


def _healthy(cluster: Cluster) -> bool:
    if not cluster.running:
        return False
    try:
        return cluster.request("GET", "/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/test-cluster",
        description="A real Kubernetes API server (etcd + kube-apiserver) on loopback.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("start", "build if needed, start, print `export KUBECONFIG=...` last"),
        ("stop", "stop what start started in DIR"),
        ("status", "exit 0 if the cluster in DIR answers /readyz"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"({DEFAULT_DIR})")
        if name == "start":
            command.add_argument(
                "--with-controller-manager",
                action="store_true",
                default=None,  # not given: CONTROLLER_MANAGER_ENV decides, where there is one
                help=f"also start kube-controller-manager (or {CONTROLLER_MANAGER_ENV}=1)",
            )
            command.add_argument(
                "--node",
                action="store_true",
                help="also a node: kube-controller-manager, kube-scheduler, a containerd of its "
                "own and a kubelet (one Ready node, CNI bridge pod network)",
            )
            command.add_argument(
                "--hosts-dir",
                type=Path,
                metavar="DIR",
                help="containerd's registry config_path (what kferry mirror-config wrote)",
            )
            command.add_argument(
                "--registry-ca",
                type=Path,
                action="append",
                default=[],
                metavar="FILE",
                help="a CA the node trusts for registries (repeatable)",
            )
            command.add_argument(
                "--registry-auth",
                type=Path,
                metavar="CONFIG_JSON",
                help="registry credentials the node itself holds (a Docker config.json), "
                "written to containerd's registry.configs.HOST.auth",
            )
            command.add_argument(
                "--kubernetes",
                choices=list(COMPONENTS),
                default=DEFAULT_KUBERNETES,
                help=f"the Kubernetes version ({DEFAULT_KUBERNETES}); 1.21 has no controller "
                "manager",
            )
    args = parser.parse_args(list(argv) if argv is not None else None)
    directory: Path = args.dir.resolve()
    existing = attach(directory)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.command == "status":
        if existing is not None and _healthy(existing):
            say(f"running: {existing.server} (pids {[p.pid for p in existing.processes.values()]})")
            print(f"export KUBECONFIG={existing.kubeconfig}")
            return 0
        say(f"not running in {directory}")
        return 1
    node_asked = args.command == "start" and (
        args.node or args.hosts_dir or args.registry_ca or args.registry_auth
    )
    if node_asked:
        if args.kubernetes != DEFAULT_KUBERNETES:
            raise ClusterError(f"no node for Kubernetes {args.kubernetes}")
        for option, path in (
            ("--hosts-dir", args.hosts_dir),
            ("--registry-auth", args.registry_auth),
        ):
            if path is not None and not path.exists():
                raise ClusterError(f"{option} {path}: no such file or directory")
        for path in args.registry_ca:
            if not path.is_file():
                raise ClusterError(f"--registry-ca {path}: no such file")
    if args.command == "stop":
        if existing is None:
            say(f"nothing to stop in {directory}")
            return 0
        existing.stop()
        say(f"stopped the cluster in {directory}")
        return 0

    with_controller_manager: bool = args.with_controller_manager or False
    if "kube-controller-manager" not in COMPONENTS[args.kubernetes]:
        if with_controller_manager:
            raise ClusterError(f"no kube-controller-manager for Kubernetes {args.kubernetes}")
    elif args.with_controller_manager is None:
        with_controller_manager = os.environ.get(CONTROLLER_MANAGER_ENV, "") not in ("", "0")
    if existing is not None and _healthy(existing):
        if existing.kubernetes != args.kubernetes:
            raise ClusterError(
                f"a Kubernetes {existing.kubernetes} cluster is running in {directory}: "
                f"stop it first, or use another --dir"
            )
        cluster = existing
        say(f"already running in {directory}")
    else:
        if existing is not None:
            existing.stop()  # leftovers of a start whose processes died
        cluster = start_cluster(directory, tied=False, kubernetes=args.kubernetes)
        say(
            f"kube-apiserver {cluster.get('/version')['gitVersion']} at {cluster.server} ready "
            f"in {cluster.start_seconds:.1f} s (etcd {cluster.timings['etcd']:.1f} s, "
            f"kube-apiserver {cluster.timings['kube-apiserver']:.1f} s); "
            f"logs in {directory / 'logs'}"
        )
    if with_controller_manager and not cluster.has_controller_manager:
        seconds = cluster.start_controller_manager()
        say(f"kube-controller-manager healthy in {seconds:.1f} s")
    if node_asked:
        auths = auths_from_docker_config(args.registry_auth) if args.registry_auth else None
        info = cluster.start_node(
            hosts_dir=args.hosts_dir, registry_cas=args.registry_ca, registry_auths=auths
        )
        say(
            f"node {NODE_NAME} Ready in {info.start_seconds:.1f} s (pod network {info.subnet} "
            f"on bridge {info.bridge}; containerd at {info.socket}; registry config_path "
            f"{info.hosts_dir})"
        )
    say(f"stop with: scripts/test-cluster stop --dir {directory}")
    print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ClusterError as exc:  # what went wrong, with the log's end; the rest is stopped
        print(f"scripts/test-cluster: {exc}", file=sys.stderr)
        sys.exit(1)


__all__ = [
    "Cluster",
    "ClusterError",
    "attach",
    "bin_override_env",
    "cluster_bin",
    "issue_client_cert",
    "start_cluster",
    "tls_context",
    "write_kubeconfig",
]
