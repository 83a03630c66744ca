"""The whole Kubeflow 26.03 release on the node: a runnable stand-in is pushed under the target
of every name `kferry images` lists (a lock file records each one's digest), the render is
rewritten with `kferry rewrite --lock --pin-digests`, applied with `kferry apply`, and every
container of every pod that the built-in workloads make gets past its image pull, from the
private registry only.

The stand-ins are busybox, not the real programs, and this is one 2-core node without storage,
certificates or the controllers that make the rest; so, on the rewritten objects (the images
are not touched):

- admission webhook configurations and APIServices are left out (nothing serves them);
- Namespaces lose their pod-security labels (busybox runs as root);
- each pod template: no resource requests or limits (the release asks for more than 2
  cores), no probes, containers run ``sleep`` and init containers ``true`` (the real
  commands are not in busybox), volumes other than ConfigMaps, Secrets and downward API become
  emptyDir and ConfigMap/Secret volumes become optional (no PVC provisioner, no
  cert-manager to make the Secrets); StatefulSets lose their volumeClaimTemplates; one replica.

A container is past its pull when its status has an ``imageID``, or waits for a reason kubelet
gives only once the image is there (``CreateContainerConfigError``: "container has
runAsNonRoot and image will run as root", ...); none may wait in ErrImagePull or
ImagePullBackOff, and every reference names the private registry.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kferry.name import parse
from kferry.plan import Target, plan
from tests.conftest import run_kferry
from tests.support.cluster import Cluster, start_cluster
from tests.support.node import pull_failure
from tests.support.registry import Registry, start_registry
from tests.support.runnable import push_runnable

pytestmark = [
    pytest.mark.node,
    pytest.mark.cluster,
    pytest.mark.registry,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="a node needs root"),
]

ROOT = Path(__file__).resolve().parents[1]
RENDER = ROOT / "examples" / "kubeflow" / "kubeflow-26.03.yaml.gz"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
LEFT_OUT = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService")
KEPT_VOLUMES = ("configMap", "secret", "downwardAPI", "emptyDir")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Registry, Path]]:
    work = tmp_path_factory.mktemp("release")
    registry = start_registry(work / "harbor", tls=False)
    cluster = None
    try:
        cluster = start_cluster(work / "cluster", node=True)
        yield cluster, registry, work
    finally:
        if cluster is not None:
            cluster.stop()
        registry.stop()


# What kubelet reports only after the image is there (EnsureImageExists comes first in
# kuberuntime's startContainer): "container has runAsNonRoot and image will run as root"
# needs the image's config, say.
AFTER_PULL = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError",
              "CrashLoopBackOff")  # fmt: skip


def _past_pull(status: dict[str, Any]) -> bool:
    waiting = (status.get("state") or {}).get("waiting") or {}
    return bool(status.get("imageID")) or waiting.get("reason") in AFTER_PULL


def _relax_pod(spec: dict[str, Any]) -> None:
    spec.pop("affinity", None)
    spec.pop("priorityClassName", None)
    spec["terminationGracePeriodSeconds"] = 1
    for key, command in (
        ("initContainers", ["/bin/true"]),
        ("containers", ["/bin/sleep", "2147483647"]),
    ):
        for c in spec.get(key) or []:
            c["command"] = command
            c.pop("args", None)
            c.pop("resources", None)
            c.pop("workingDir", None)
            for probe in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle"):
                c.pop(probe, None)
    for volume in spec.get("volumes") or []:
        kind = next((k for k in volume if k != "name"), None)
        if kind in ("configMap", "secret"):
            volume[kind]["optional"] = True
        elif kind not in KEPT_VOLUMES:
            for k in list(volume):
                if k != "name":
                    del volume[k]
            volume["emptyDir"] = {}
    names = {v["name"] for v in spec.get("volumes") or []}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            for mount in c.get("volumeMounts") or []:
                if mount["name"] not in names:
                    spec.setdefault("volumes", []).append({"name": mount["name"], "emptyDir": {}})
                    names.add(mount["name"])


def _relax(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for obj in objects:
        if obj.get("kind") in LEFT_OUT:
            continue
        obj = copy.deepcopy(obj)
        if obj.get("kind") == "Namespace":
            labels = obj["metadata"].get("labels") or {}
            for key in [k for k in labels if k.startswith("pod-security.kubernetes.io/")]:
                del labels[key]
        if obj.get("kind") in WORKLOADS and str(obj.get("apiVersion", "")).startswith(
            ("apps/", "batch/")
        ):
            spec = obj["spec"]
            if "replicas" in spec:
                spec["replicas"] = 1
            spec.pop("volumeClaimTemplates", None)
            _relax_pod(spec["template"]["spec"])
        out.append(obj)
    return out


def test_whole_release_pulls_every_image_from_the_private_registry(
    node: tuple[Cluster, Registry, Path],
) -> None:
    cluster, registry, work = node
    started = time.monotonic()
    res = run_kferry("images", str(RENDER), "-o", "list")
    assert res.code == 0, res.err
    sources = [parse(line) for line in res.out.split()]
    project = f"{registry.host}/kubeflow"
    entries = []
    with registry.client(timeout=120) as client:
        for planned in plan(sources, Target.parse(project, "keep")):
            target = planned.target
            labels = {"kferry.test/source": planned.source.canonical}
            image = push_runnable(
                registry, target.path, tag=target.tag, labels=labels, client=client
            )
            entries.append(
                {
                    "source": planned.source.canonical,
                    "target": f"{target.domain}/{target.path}"
                    + (f":{target.tag}" if target.tag else f"@{image.digest}"),
                    "digest": image.digest,
                }
            )
    lock = work / "kferry.lock.json"
    lock.write_text(json.dumps({"version": 1, "images": entries}))
    out = work / "private.yaml"
    res = run_kferry(
        "rewrite", str(RENDER), "--to", project, "--lock", str(lock), "--pin-digests",
        "-o", str(out),
    )  # fmt: skip
    assert res.code == 0, res.err
    relaxed = _relax([d for d in yaml.load_all(out.read_text(), Loader=yaml.CSafeLoader) if d])
    expected = sum(1 for o in relaxed if o.get("kind") in WORKLOADS)
    relaxed_file = work / "relaxed.yaml"
    relaxed_file.write_text(yaml.dump_all(relaxed, Dumper=yaml.CSafeDumper))
    env = {"KUBECONFIG": str(cluster.kubeconfig)}
    res = run_kferry(
        "apply", str(relaxed_file), "--timeout", "5m", "-o", "json", env=env, timeout=900
    )
    assert res.code == 0, res.out[-3000:] + res.err[-3000:]

    deadline = time.monotonic() + 900
    while True:
        try:  # a 2-core machine starting ~50 pods: the API server may answer late
            pods = cluster.get("/api/v1/pods")["items"]
        except httpx.HTTPError:
            time.sleep(3)
            continue
        failures = {p["metadata"]["name"]: pull_failure(p) for p in pods if pull_failure(p)}
        assert not failures, failures
        pending = []
        for pod in pods:
            statuses = (pod.get("status") or {}).get("initContainerStatuses", []) + (
                pod.get("status") or {}
            ).get("containerStatuses", [])
            wanted = len(pod["spec"].get("initContainers") or []) + len(pod["spec"]["containers"])
            if len(statuses) < wanted or not all(_past_pull(s) for s in statuses):
                pending.append(pod["metadata"]["namespace"] + "/" + pod["metadata"]["name"])
        if len(pods) >= expected and not pending:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pods)} of {expected} pods; not past their pulls: {pending}")
        time.sleep(3)
    images = set()
    for pod in pods:
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            assert c["image"].startswith(project + "/"), (pod["metadata"]["name"], c["image"])
        for s in (
            pod["status"].get("initContainerStatuses", []) + pod["status"]["containerStatuses"]
        ):
            if s.get("imageID"):
                assert s["imageID"].startswith(project + "/"), (pod["metadata"]["name"], s)
                images.add(s["imageID"])
    print(
        f"26.03: {len(sources)} images, {expected} workloads, {len(pods)} pods, "
        f"{len(images)} images pulled, {time.monotonic() - started:.0f} s"
    )
