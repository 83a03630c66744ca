"""`scripts/test-cluster start --node`: one Ready node (kubelet + a containerd of its own), a
first pod from a runnable busybox image on a loopback registry, and `stop` leaving nothing
behind (processes by pid, containers, mounts, network namespaces, cgroups, the bridge).

The entry point is the one the suite and people use; it needs root (containerd, kubelet,
bridges), and the node binaries of scripts/build-cluster and scripts/system-deps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cluster import ROOT, attach
from tests.support.node import NODE_NAME, https_host, leftovers, load_node, node_ready, wait_pods
from tests.support.registry import Registry, RegistryFactory
from tests.support.runnable import push_runnable

pytestmark = [
    pytest.mark.node,
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="a node needs root"),
]

SCRIPT = ROOT / "scripts" / "test-cluster"


def _script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def _runs(pid: int) -> bool:
    """Alive and not a zombie (the script's processes are reparented to init, which may reap
    them a moment later)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _netns_mounts(under: Path | None = None) -> set[str]:
    """Network namespaces mounted on this machine (below ``under``: one node's). Other tests'
    nodes may be running meanwhile (a session's node, another xdist worker's), so what this
    node leaves is read below its own state directory."""
    prefix = f"{under}/" if under is not None else ""
    return {
        point
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if " - nsfs " in line and (point := line.split()[4]).startswith(prefix)
    }


def _pod(name: str, image: str, command: list[str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": command}],
        },
    }


@pytest.mark.registry
def test_start_node_runs_a_pod_and_stop_leaves_nothing(
    tmp_path: Path, registry_factory: RegistryFactory
) -> None:
    public: Registry = registry_factory(tls=True, auth=None, name="harbor")
    assert public.ca_file is not None
    image = push_runnable(public, "kubeflow/kubeflow/notebook-controller", tag="v1.9.0")
    directory = tmp_path / "cluster"
    hosts = tmp_path / "certs.d"
    https_host(hosts, public.host)
    started = time.perf_counter()
    res = _script(
        "start", "--node", "--dir", str(directory), "--hosts-dir", str(hosts),
        "--registry-ca", str(public.ca_file),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    try:
        assert res.returncode == 0, res.stderr
        last = res.stdout.strip().splitlines()[-1]
        assert last == f"export KUBECONFIG={directory / 'kubeconfig'}"
        kubeconfig = directory / "kubeconfig"
        print(f"start --node took {seconds:.1f} s:\n{res.stderr}")
        kubectl = shutil.which("kubectl")
        if kubectl:
            out = subprocess.run(
                [kubectl, "get", "nodes", "--no-headers"],
                capture_output=True, text=True, check=True,
                env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            ).stdout  # fmt: skip
            assert out.split()[:2] == [NODE_NAME, "Ready"], out
        cluster = attach(directory)
        assert cluster is not None and cluster.running
        nodes = cluster.get("/api/v1/nodes")["items"]
        assert [n["metadata"]["name"] for n in nodes] == [NODE_NAME]
        assert node_ready(nodes[0])
        info = load_node(directory)
        assert info is not None
        pids = {name: p.pid for name, p in cluster.processes.items()}
        assert {"containerd", "kubelet", "kube-scheduler", "kube-controller-manager"} <= set(pids)

        # A first pod: pulled by the node's containerd over TLS (the CA given as
        # --registry-ca), scheduled by kube-scheduler, networked by the CNI bridge.
        cluster.post(
            "/api/v1/namespaces/default/pods",
            _pod("first", image.tag_ref, ["/bin/sh", "-c", "echo hello from $(hostname)"]),
        )
        done = wait_pods(
            cluster,
            "default",
            lambda ps: ps and ps[0].get("status", {}).get("phase") in ("Succeeded", "Failed"),
            what="the first pod",
            timeout=180,
        )
        pod = done[0]
        assert pod["status"]["phase"] == "Succeeded", pod["status"]
        assert pod["spec"]["nodeName"] == NODE_NAME
        status = pod["status"]["containerStatuses"][0]
        assert status["imageID"].endswith(image.digest), status
        pod_ip = pod["status"].get("podIP") or pod["status"]["podIPs"][0]["ip"]
        assert pod_ip.startswith(info.subnet.rsplit(".", 2)[0] + "."), (pod_ip, info.subnet)
        logs = cluster.request("GET", "/api/v1/namespaces/default/pods/first/log").text
        assert logs.strip() == "hello from first", logs

        # A long-running pod, so that stop has a live sandbox, container and netns to remove.
        cluster.post(
            "/api/v1/namespaces/default/pods",
            _pod("sleeper", image.tag_ref, ["/bin/sleep", "3600"]),
        )
        wait_pods(
            cluster,
            "default",
            lambda ps: any(
                p["metadata"]["name"] == "sleeper" and p["status"].get("phase") == "Running"
                for p in ps
            ),
            what="the sleeper pod",
        )
        assert _netns_mounts(info.directory), "no sandbox network namespace seen"
        assert leftovers(info), "nothing running to leave behind?"
    finally:
        stopped = _script("stop", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    for name, pid in pids.items():
        assert not _runs(pid), f"{name} (pid {pid}) still runs"
    assert leftovers(info) == []
    assert _netns_mounts(info.directory) == set()
    assert not (directory / "node.json").exists()
    state = directory / "cluster.json"
    assert not state.exists()
