"""A real node for the test cluster: kube-scheduler, a containerd of its own and a kubelet that
registers one Ready node, with a pod network from the CNI bridge plugin.

:func:`start_node` adds it to a running :class:`~tests.support.cluster.Cluster` (which also
gets kube-controller-manager, so Deployments, Jobs and CronJobs make pods);
:func:`stop_node` removes everything it made, in this order: kube-scheduler and kubelet
stop (by pid); every container is killed and deleted through ``ctr`` (so each shim exits and
removes its socket); the processes left in the node's cgroups are killed by pid; containerd
stops; every mount under the node's directory (overlay snapshots, pod volumes, the sandboxes'
network namespaces, which live there: ``netns_mounts_under_state_dir``) is unmounted; the
cgroups, the bridge, the CNI result cache entries and ``/var/log/containers`` links it made
are removed; the kernel settings kubelet changed are set back.

What the node is made of (all Debian packages from ``scripts/system-deps`` but kubelet and
kube-scheduler, which ``scripts/build-cluster`` builds from the Kubernetes module):

- containerd 1.6 with its own root, state, socket, runc root and ``/opt`` plugin directory
  under ``DIR/node/``, never the system's (``/var/lib/containerd``, ``/run/containerd``):
  the CRI plugin's registry ``config_path`` is ``--hosts-dir`` (what ``kferry mirror-config``
  writes, as an admin puts it in ``/etc/containerd/certs.d``) or an empty directory; a
  registry CA (``--registry-ca``) is trusted the way an admin installs Harbor's CA on a node:
  added to the trust store containerd reads (a bundle of the system's CAs plus that one,
  named by ``SSL_CERT_FILE`` in containerd's environment, which Go's TLS honours), so no
  ``ca`` line is needed in hosts.toml; registry credentials a node itself must hold (for
  references kubelet has no pull secret for: the mirror path) go where containerd 1.6 reads
  them, ``[plugins."io.containerd.grpc.v1.cri".registry.configs."HOST".auth]`` (hosts.toml
  has no credentials);
- runc, the cgroupfs driver on this machine's cgroup v1 controllers (kubelet's
  ``failCgroupV1: false``), every cgroup below one root of this node's own
  (``/kferry-node-ID``);
- the pause image: the busybox image of :mod:`tests.support.runnable` running
  ``sleep 2147483647``, imported with ``ctr images import`` (nothing is pulled for it);
- the pod network: a bridge ``kfID`` that this module creates with address
  ``10.87.N.1/24`` (the first N from 0 that no interface here uses), and the CNI ``bridge``
  plugin with ``host-local`` IPAM on ``10.87.N.0/24`` (``isGateway: false``, no routes, no
  ``ipMasq``): pods reach each other and the host's bridge address, nothing else; nothing is
  routed (``net.ipv4.ip_forward`` stays as it is, 0 here) or masqueraded, and the pods'
  resolv.conf names only 127.0.0.1 (their own loopback), so no lookup leaves the pod;
- kubelet registers ``kferry-node`` with the bridge address as its InternalIP and serves
  (for logs) on it; the API server reaches it with the admin client certificate
  (``--kubelet-client-certificate``), which kubelet checks against the cluster CA and
  authorizes with a SubjectAccessReview.

Kubelet sets a few kernel settings at start (``vm.overcommit_memory=1``,
``kernel.panic=10``, ``kernel.panic_on_oops=1``, ...: ``protectKernelDefaults: false``);
their old values are recorded in ``node.json`` and written back by :func:`stop_node`.

What this machine needed, found on it: root here lacks CAP_SYS_RESOURCE, so runc cannot set
the sandbox's ``oom_score_adj`` of -998 and the first trial's "can't get final child's PID
from pipe: EOF" followed; ``restrict_oom_score_adj = true`` clamps it. containerd 1.6 speaks
plain HTTP to any registry on 127.0.0.1 that has no hosts.toml, so TLS test registries get a
one-host hosts.toml (:func:`https_host`); a real Harbor's host gets https by default.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.support import markers
from tests.support.runnable import write_oci_archive

if TYPE_CHECKING:
    from tests.support.cluster import Cluster
    from tests.support.registry import Registry

NODE_NAME = "kferry-node"
NODE_STATE = "node.json"
PAUSE_IMAGE = "kferry.test/pause:busybox"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
SUBNET_PREFIX = "10.87"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CONTAINER_LOGS_DIR = Path("/var/log/containers")  # kubelet's links, a fixed path
CNI_CACHE_DIR = Path("/var/lib/cni/results")  # libcni's result cache, a fixed path
# What kubelet's container manager sets when protectKernelDefaults is false
# (pkg/kubelet/cm/container_manager_linux.go setupKernelTunables).
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
NODE_START_TIMEOUT = 120.0


class NodeError(RuntimeError):
    """A node part that is missing or would not start."""


def _run(*argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NodeError(f"{name} is missing: run scripts/system-deps")
    return path


def _cni_bin_dir() -> Path:
    for candidate in CNI_BIN_DIRS:
        if (Path(candidate) / "bridge").exists() and (Path(candidate) / "host-local").exists():
            return Path(candidate)
    raise NodeError("the CNI plugins are missing: run scripts/system-deps")


def _node_id(directory: Path) -> str:
    return hashlib.sha256(str(directory).encode()).hexdigest()[:8]


def _used_subnets() -> set[str]:
    out = _run("ip", "-4", "-o", "addr", "show").stdout
    return set(re.findall(rf"inet ({re.escape(SUBNET_PREFIX)}\.\d+)\.\d+/", out))


def _cgroup_mounts() -> list[Path]:
    """Every cgroup hierarchy mounted here (v1 controllers, named ones, the unified one)."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split()[0] if right else ""
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(Path(left.split()[4]))
    return mounts


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory``, deepest (last mounted) first."""
    found = []
    prefix = str(directory).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(directory) or point.startswith(prefix):
            found.append(point)
    return list(reversed(found))


def _read_sysctls() -> dict[str, str]:
    values = {}
    for key in KERNEL_TUNABLES:
        with contextlib.suppress(OSError):
            values[key] = (Path("/proc/sys") / key).read_text().strip()
    return values


@dataclass(frozen=True)
class NodeInfo:
    """What :func:`start_node` made (also in ``DIR/node.json``)."""

    directory: Path
    bridge: str
    subnet: str
    gateway: str
    cgroup_root: str
    socket: Path
    hosts_dir: Path
    sysctls: Mapping[str, str]
    start_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "bridge": self.bridge,
            "subnet": self.subnet,
            "gateway": self.gateway,
            "cgroup_root": self.cgroup_root,
            "socket": str(self.socket),
            "hosts_dir": str(self.hosts_dir),
            "sysctls": dict(self.sysctls),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeInfo:
        return cls(
            directory=Path(data["directory"]),
            bridge=data["bridge"],
            subnet=data["subnet"],
            gateway=data["gateway"],
            cgroup_root=data["cgroup_root"],
            socket=Path(data["socket"]),
            hosts_dir=Path(data["hosts_dir"]),
            sysctls=dict(data.get("sysctls", {})),
        )

    @property
    def network_name(self) -> str:
        return f"kferry-{self.bridge}"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr --address SOCKET -n k8s.io ARGS``: the CRI's containers and images."""
        return _run("ctr", "--address", str(self.socket), "-n", "k8s.io", *args, check=check)


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string for these characters


def containerd_config(
    node_dir: Path,
    hosts_dir: Path,
    cni_bin: Path,
    registry_auths: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """containerd 1.6's config.toml (version 2) for this node."""
    q = _toml_string
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [
        "version = 2",
        f"root = {q(str(node_dir / 'containerd' / 'root'))}",
        f"state = {q(str(node_dir / 'containerd' / 'state'))}",
        "disabled_plugins = ["
        '"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", '
        '"io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", '
        '"io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
        "",
        "[grpc]",
        f"  address = {q(str(node_dir / 'containerd.sock'))}",
        "[ttrpc]",
        f"  address = {q(str(node_dir / 'containerd.sock.ttrpc'))}",
        "[debug]",
        '  address = ""',
        '  level = "info"',
        "[metrics]",
        '  address = ""',
        "",
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {q(str(node_dir / 'containerd' / 'opt'))}",
        "",
        f"[{cri}]",
        f"  sandbox_image = {q(PAUSE_IMAGE)}",
        "  netns_mounts_under_state_dir = true",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        "  enable_selinux = false",
        # Root here lacks CAP_SYS_RESOURCE (a Firecracker VM's init drops it), so no process may
        # lower its oom_score_adj, and runc dies on the sandbox's -998 ("can't get final
        # child's PID from pipe: EOF"; runc's own log: "failed to update
        # /proc/self/oom_score_adj: Permission denied"). This clamps every container's value
        # to containerd's own (0), what rootless setups do.
        "  restrict_oom_score_adj = true",
        "  disable_apparmor = true",
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        "  SystemdCgroup = false",
        f"  BinaryName = {q(os.environ.get('KFERRY_NODE_RUNC') or _tool('runc'))}",
        f"  Root = {q(str(node_dir / 'runc'))}",
        f"[{cri}.cni]",
        f"  bin_dir = {q(str(cni_bin))}",
        f"  conf_dir = {q(str(node_dir / 'cni' / 'net.d'))}",
        "  max_conf_num = 1",
        f"[{cri}.registry]",
        f"  config_path = {q(str(hosts_dir))}",
    ]
    for host, (username, password) in sorted((registry_auths or {}).items()):
        lines += [
            f"[{cri}.registry.configs.{q(host)}.auth]",
            f"  username = {q(username)}",
            f"  password = {q(password)}",
        ]
    return "\n".join(lines) + "\n"


def cni_config(info: NodeInfo, node_dir: Path) -> dict[str, Any]:
    """The pod network: the bridge plugin on our own bridge, host-local IPAM, no gateway
    role (no forwarding switched on), no routes, no masquerade."""
    return {
        "cniVersion": "1.0.0",
        "name": info.network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": info.bridge,
                "isGateway": False,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": info.subnet, "gateway": info.gateway}]],
                    "dataDir": str(node_dir / "cni" / "ipam"),
                },
            }
        ],
    }


def kubelet_config(
    info: NodeInfo, node_dir: Path, cluster: Cluster, port: int, healthz_port: int
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine mounts cgroup v1 controllers; kubelet refuses them unless told.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": info.cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "containerRuntimeEndpoint": f"unix://{info.socket}",
        "address": info.gateway,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(cluster.ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(node_dir / "pod-logs"),
        "resolvConf": str(node_dir / "resolv.conf"),
        "clusterDomain": "cluster.local",
        "failSwapOn": False,
        "serializeImagePulls": False,
        # Never collect images or evict pods on this shared machine's disk or memory use.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "protectKernelDefaults": False,
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusUpdateFrequency": "4s",
        "shutdownGracePeriod": "0s",
        "maxPods": 110,
    }


def https_host(hosts_dir: Path, host: str) -> Path:
    """Write ``HOSTS_DIR/HOST/hosts.toml`` saying ``server = "https://HOST"``, and nothing
    else. containerd 1.6 speaks plain HTTP (without verification) to a localhost or
    127.0.0.1 registry that has no hosts.toml (remotes/docker/config/hosts.go@v1.6.20:102),
    and every test registry is on 127.0.0.1: this gives a loopback TLS registry what any
    other host gets by default (https, checked against the node's trust store)."""
    directory = hosts_dir / host
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "hosts.toml"
    path.write_text(host_entry(f"https://{host}", "a TLS registry on loopback"))
    return path


def host_entry(url: str, comment: str) -> str:
    """A hosts.toml whose only host is ``url``. (containerd 1.6.20 refuses a hosts.toml
    without a ``[host]`` table, "invalid `host` tree", and then ignores it:
    remotes/docker/config/hosts.go:497-500, so ``server`` alone is not enough.)"""
    return (
        f"# {comment} (tests/support/node.py)\n"
        f'server = "{url}"\n\n[host."{url}"]\n  capabilities = ["pull", "resolve"]\n'
    )


def _state_file(cluster_dir: Path) -> Path:
    return cluster_dir / NODE_STATE


def load_node(cluster_dir: Path) -> NodeInfo | None:
    try:
        return NodeInfo.from_json(json.loads(_state_file(cluster_dir).read_text()))
    except (FileNotFoundError, ValueError, KeyError):
        return None


def _bundle(ca_files: list[Path], dest: Path) -> Path:
    parts = [SYSTEM_CA_BUNDLE.read_bytes()] if SYSTEM_CA_BUNDLE.exists() else []
    parts += [f.read_bytes() for f in ca_files]
    dest.write_bytes(b"\n".join(parts))
    return dest


def auths_from_docker_config(path: Path) -> dict[str, tuple[str, str]]:
    """``{host: (username, password)}`` from a Docker ``config.json`` (``auths``)."""
    data = json.loads(path.read_text())
    out = {}
    for host, entry in (data.get("auths") or {}).items():
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        out[host] = (user, password)
    return out


def start_node(
    cluster: Cluster,
    *,
    hosts_dir: Path | None = None,
    registry_cas: list[Path] | None = None,
    registry_auths: Mapping[str, tuple[str, str]] | None = None,
    timeout: float = NODE_START_TIMEOUT,
) -> NodeInfo:
    """Start kube-controller-manager (if not running), containerd, kubelet and
    kube-scheduler for ``cluster`` and wait for the node to be Ready. See the module."""
    from tests.support.cluster import _wait_ready
    from tests.support.processes import free_port, launch_process

    markers.started(markers.NODE, "a node (kubelet + containerd)")
    started = time.perf_counter()
    if load_node(cluster.directory) is not None:
        stop_node(cluster)
    for name in ("kubelet", "kube-scheduler"):
        if not (cluster.bin_dir / name).exists():
            raise NodeError(f"{cluster.bin_dir / name} is missing: run scripts/build-cluster")
    containerd = _tool("containerd")
    _tool("containerd-shim-runc-v2")
    _tool("ctr")
    _tool("runc")
    cni_bin = _cni_bin_dir()

    # The node's files live in a short directory of their own, linked from DIR/node: kubelet
    # and containerd put unix sockets under it, and a socket path longer than 107 bytes cannot
    # be bound ("bind: invalid argument" from kubelet's pod-resources socket under a deep
    # pytest tmp dir).
    link = cluster.directory / "node"
    node_dir = Path("/tmp") / f"kferry-node-{_node_id(cluster.directory)}"
    _remove_tree(node_dir)
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        _remove_tree(link)
    node_dir.mkdir(parents=True)
    link.symlink_to(node_dir)
    for sub in ("cni/net.d", "cni/ipam", "pod-logs", "kubelet", "certs.d", "runc"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    ident = _node_id(cluster.directory)
    used = _used_subnets()
    n = next((i for i in range(256) if f"{SUBNET_PREFIX}.{i}" not in used), None)
    if n is None:
        raise NodeError(f"no free {SUBNET_PREFIX}.N.0/24 for the pod network")
    info = NodeInfo(
        directory=node_dir,
        bridge=f"kf{ident}",
        subnet=f"{SUBNET_PREFIX}.{n}.0/24",
        gateway=f"{SUBNET_PREFIX}.{n}.1",
        cgroup_root=f"/kferry-node-{ident}",
        socket=node_dir / "containerd.sock",
        hosts_dir=(hosts_dir.resolve() if hosts_dir else node_dir / "certs.d"),
        sysctls=_read_sysctls(),
    )
    state = _state_file(cluster.directory)
    state.write_text(json.dumps(info.to_json(), indent=2))
    try:
        cluster.start_controller_manager(timeout=timeout)
        _run("ip", "link", "add", info.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{info.gateway}/24", "dev", info.bridge)
        _run("ip", "link", "set", info.bridge, "up")
        for mount in _cgroup_mounts():
            (mount / info.cgroup_root.lstrip("/")).mkdir(exist_ok=True)

        (node_dir / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (node_dir / "cni" / "net.d" / "10-kferry.conflist").write_text(
            json.dumps(cni_config(info, node_dir), indent=2)
        )
        config_file = node_dir / "containerd.toml"
        config_file.write_text(containerd_config(node_dir, info.hosts_dir, cni_bin, registry_auths))
        config_file.chmod(0o600)
        env_bundle = _bundle(list(registry_cas or []), node_dir / "ca-bundle.pem")
        logs = cluster.directory / "logs"
        phase = time.perf_counter()
        process = launch_process(
            "containerd",
            Path(containerd),
            # through the DIR/node link: the command line names DIR, as is_ours expects
            ["--config", str(link / config_file.name)],
            logs / "containerd.log",
            tied=cluster.tied,
            env={**os.environ, "SSL_CERT_FILE": str(env_bundle)},
        )
        cluster.processes["containerd"] = process
        cluster._save_state()
        _wait_socket(info, process, timeout)
        archive = write_oci_archive(node_dir / "pause.tar", PAUSE_IMAGE)
        info.ctr("images", "import", "--snapshotter", "overlayfs", str(archive.path))
        cluster.timings["containerd"] = time.perf_counter() - phase

        phase = time.perf_counter()
        port, healthz_port = free_port(), free_port()
        kubelet_file = node_dir / "kubelet.yaml"
        kubelet_file.write_text(
            yaml.safe_dump(kubelet_config(info, node_dir, cluster, port, healthz_port))
        )
        kubelet = launch_process(
            "kubelet",
            cluster.bin_dir / "kubelet",
            [
                f"--config={kubelet_file}",
                f"--kubeconfig={cluster.kubeconfig}",
                f"--root-dir={node_dir / 'kubelet'}",
                f"--cert-dir={node_dir / 'kubelet' / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={info.gateway}",
                "--v=1",
            ],
            logs / "kubelet.log",
            tied=cluster.tied,
        )
        cluster.processes["kubelet"] = kubelet
        cluster._save_state()
        _wait_ready(
            kubelet, f"http://127.0.0.1:{healthz_port}/healthz", verify=False, timeout=timeout
        )
        wait_node_ready(cluster, timeout=timeout, process=kubelet)
        cluster.timings["kubelet"] = time.perf_counter() - phase

        phase = time.perf_counter()
        scheduler_port = free_port()
        scheduler = launch_process(
            "kube-scheduler",
            cluster.bin_dir / "kube-scheduler",
            [
                f"--kubeconfig={cluster.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
                f"--cert-dir={node_dir / 'kube-scheduler'}",
            ],
            logs / "kube-scheduler.log",
            tied=cluster.tied,
        )
        cluster.processes["kube-scheduler"] = scheduler
        cluster._save_state()
        _wait_ready(
            scheduler, f"https://127.0.0.1:{scheduler_port}/healthz", verify=False, timeout=timeout
        )
        cluster.timings["kube-scheduler"] = time.perf_counter() - phase
    except BaseException:
        stop_node(cluster)
        raise
    seconds = time.perf_counter() - started
    cluster.timings["node"] = seconds
    return NodeInfo(**{**info.__dict__, "start_seconds": seconds})


def _wait_socket(info: NodeInfo, process: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not process.alive():
            raise NodeError(f"containerd exited; its log ends:\n{process.log_tail()}")
        if info.socket.exists() and info.ctr("version", check=False).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise NodeError(f"containerd not answering within {timeout} s:\n{process.log_tail()}")
        time.sleep(0.1)


def node_ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def wait_node_ready(cluster: Cluster, *, timeout: float, process: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = "not registered"
    while True:
        if process is not None and not process.alive():
            raise NodeError(f"kubelet exited; its log ends:\n{process.log_tail()}")
        with contextlib.suppress(Exception):
            response = cluster.request("GET", f"/api/v1/nodes/{NODE_NAME}")
            if response.status_code == 200:
                node: dict[str, Any] = response.json()
                if node_ready(node):
                    return node
                last = (node.get("status") or {}).get("conditions")
        if time.monotonic() > deadline:
            tail = process.log_tail() if process is not None else ""
            raise NodeError(f"node {NODE_NAME} not Ready within {timeout} s ({last}):\n{tail}")
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------
# Stopping


def _remove_tree(path: Path) -> None:
    for point in _mounts_under(path):
        _run("umount", "-l", point, check=False)
    shutil.rmtree(path, ignore_errors=True)


def _cgroup_pids(root: str) -> set[int]:
    pids: set[int] = set()
    for mount in _cgroup_mounts():
        base = mount / root.lstrip("/")
        if not base.is_dir():
            continue
        for procs in base.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def _remove_cgroups(root: str) -> None:
    for mount in _cgroup_mounts():
        base = mount / root.lstrip("/")
        if not base.is_dir():
            continue
        dirs = sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for directory in [*dirs, base]:
            with contextlib.suppress(OSError):
                directory.rmdir()


def _shim_pids(socket: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in argv:
            found.append(int(entry.name))
    return found


def _kill(pids: Iterator[int] | list[int] | set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def stop_node(cluster: Cluster) -> None:
    """Remove everything :func:`start_node` made (see the module). Idempotent; leaves
    kube-controller-manager to :meth:`Cluster.stop`."""
    info = load_node(cluster.directory)
    for name in ("kube-scheduler", "kubelet"):
        process = cluster.processes.get(name)
        if process is not None and process.is_ours(cluster.directory):
            process.stop()
        cluster.processes.pop(name, None)
    if info is None:
        return
    containerd = cluster.processes.get("containerd")
    ids: list[str] = []
    if containerd is not None and containerd.is_ours(cluster.directory) and containerd.alive():
        ids = info.ctr("containers", "ls", "-q", check=False).stdout.split()
        for cid in ids:
            info.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        for cid in ids:
            info.ctr("tasks", "delete", "-f", cid, check=False)
            info.ctr("containers", "delete", cid, check=False)
    # Whatever is left: processes in our cgroups, shims of our socket (by pid).
    for _ in range(20):
        pids = _cgroup_pids(info.cgroup_root) | set(_shim_pids(info.socket))
        if not pids:
            break
        _kill(pids)
        time.sleep(0.1)
    if containerd is not None and containerd.is_ours(cluster.directory):
        containerd.stop()
    cluster.processes.pop("containerd", None)
    for point in _mounts_under(info.directory):
        _run("umount", point, check=False)
    for point in _mounts_under(info.directory):
        _run("umount", "-l", point, check=False)
    _remove_cgroups(info.cgroup_root)
    _run("ip", "link", "delete", info.bridge, check=False)
    if CNI_CACHE_DIR.is_dir():
        # libcni's cache: NETWORK-SANDBOXID-IFNAME (ours, and containerd's loopback network)
        for entry in CNI_CACHE_DIR.iterdir():
            if entry.name.startswith(f"{info.network_name}-") or any(
                f"-{cid}-" in entry.name for cid in ids
            ):
                with contextlib.suppress(OSError):
                    entry.unlink()
    if CONTAINER_LOGS_DIR.is_dir():
        logs = str(info.directory / "pod-logs")
        for link in CONTAINER_LOGS_DIR.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(logs):
                    link.unlink()
    for key, value in info.sysctls.items():
        with contextlib.suppress(OSError):
            path = Path("/proc/sys") / key
            if path.read_text().strip() != value:
                path.write_text(value)
    shutil.rmtree(info.directory, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        _state_file(cluster.directory).unlink()
    if (cluster.directory / "cluster.json").exists():
        cluster._save_state()


def leftovers(info: NodeInfo) -> list[str]:
    """What of a node is still here (empty after :func:`stop_node`): processes in its
    cgroups or shims of its socket, mounts under its directory, its cgroups, its bridge."""
    found = [f"process {pid}" for pid in _cgroup_pids(info.cgroup_root)]
    found += [f"shim {pid}" for pid in _shim_pids(info.socket)]
    found += [f"mount {m}" for m in _mounts_under(info.directory)]
    if info.directory.exists():
        found.append(f"directory {info.directory}")
    for mount in _cgroup_mounts():
        if (mount / info.cgroup_root.lstrip("/")).exists():
            found.append(f"cgroup {mount / info.cgroup_root.lstrip('/')}")
    if _run("ip", "link", "show", info.bridge, check=False).returncode == 0:
        found.append(f"bridge {info.bridge}")
    return found


__all__ = [
    "NODE_NAME",
    "NodeError",
    "NodeInfo",
    "auths_from_docker_config",
    "containerd_config",
    "host_entry",
    "https_host",
    "leftovers",
    "load_node",
    "start_node",
    "stop_node",
    "wait_node_ready",
]


# --------------------------------------------------------------------------------------------
# Pods on the node (test helpers)


def container_statuses(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )


def waiting_reasons(pod: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``{container: (reason, message)}`` of the containers that are waiting."""
    out = {}
    for cs in container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            out[str(cs["name"])] = (str(waiting.get("reason", "")), str(waiting.get("message", "")))
    return out


def pods(cluster: Cluster, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    params = {"labelSelector": selector} if selector else None
    items: list[dict[str, Any]] = cluster.get(f"/api/v1/namespaces/{namespace}/pods", params).get(
        "items", []
    )
    return items


def wait_pods(
    cluster: Cluster,
    namespace: str,
    done: Any,
    *,
    what: str,
    selector: str = "",
    timeout: float = 120.0,
) -> list[dict[str, Any]]:
    """Poll the namespace's pods until ``done(pods)`` is true; on timeout the error names
    every pod's phase and waiting reasons (the kubelet's own messages)."""
    deadline = time.monotonic() + timeout
    while True:
        items = pods(cluster, namespace, selector)
        if done(items):
            return items
        if time.monotonic() > deadline:
            states = {
                p["metadata"]["name"]: ((p.get("status") or {}).get("phase"), waiting_reasons(p))
                for p in items
            }
            raise NodeError(f"timed out after {timeout} s waiting for {what}: {states}")
        time.sleep(0.5)


def pod_succeeded_or_running(pod: Mapping[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return True
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return phase == "Running" and bool(statuses) and all(cs.get("ready") for cs in statuses)


def pull_failure(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(reason, message)`` of the first container waiting on a failed pull."""
    for reason, message in waiting_reasons(pod).values():
        if reason in ("ErrImagePull", "ImagePullBackOff"):
            return reason, message
    return None


def create_pull_secret(
    cluster: Cluster, namespace: str, registry: Registry, name: str = "regcred"
) -> None:
    """A ``kubernetes.io/dockerconfigjson`` Secret ``name`` in ``namespace`` holding
    ``registry``'s username and password: what a pod names in ``imagePullSecrets``."""
    creds = f"{registry.username}:{registry.password}".encode()
    config = {"auths": {registry.host: {"auth": base64.b64encode(creds).decode()}}}
    cluster.post(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
        },
    )
