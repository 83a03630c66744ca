"""Pods pulling through a real kubelet and containerd, from loopback registries.

One node for the module (``start_cluster(node=True)``, the entry point behind
``scripts/test-cluster start --node``), and the registries of a site:

- ``public``: plain HTTP, anonymous: the connected side (gcr.io, quay.io, ...), holding
  runnable busybox images under Kubeflow-shaped names;
- ``locked``: TLS from the site CA + htpasswd: the private registry that pods reach with an
  image pull secret (the node holds no credentials for it);
- ``harbor``: TLS from the site CA + htpasswd whose credentials the node itself holds
  (containerd's ``registry.configs."HOST".auth``): the mirror for references nobody rewrote;
- ``plain``: plain HTTP, anonymous, like the field report's Harbor on port 8080;
- ``untrusted``: TLS from a CA the node was never given.

The node trusts the site CA as an admin installs Harbor's CA (``registry_cas``) and reads
``kferry mirror-config`` output from its hosts directory (``config_path``), which the tests
write while it runs (containerd reads it on every pull). ``docker.io`` there points at a
closed loopback port: the air-gapped node's Docker Hub, unreachable, so that a host-less name
fails the way it does on a site without any request leaving this machine.

Every assertion on a pull reads the kubelet's own status (``imageID``, ``waiting.message``).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Result, run_kferry
from tests.support.cluster import Cluster, start_cluster
from tests.support.cluster_fixtures import unique_namespace
from tests.support.node import (
    NodeInfo,
    create_pull_secret,
    host_entry,
    https_host,
    pod_succeeded_or_running,
    pull_failure,
    wait_pods,
)
from tests.support.registry import Registry, free_port, new_ca, start_registry
from tests.support.runnable import push_runnable, push_runnable_index

pytestmark = [
    pytest.mark.node,
    pytest.mark.cluster,
    pytest.mark.registry,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="a node needs root"),
]

PROJECT = "kubeflow"


@dataclass
class Site:
    cluster: Cluster
    node: NodeInfo
    public: Registry
    locked: Registry
    harbor: Registry
    plain: Registry
    untrusted: Registry
    hosts: Path
    work: Path
    closed_port: int

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.cluster.kubeconfig)}

    def namespace(self, name: str) -> str:
        ns = unique_namespace(name)
        self.cluster.create_namespace(ns)
        return ns

    def mirror(self, target: Registry, *refs: str, lock: Path) -> Result:
        args = ["mirror", *refs, "--to", f"{target.host}/{PROJECT}", "--lock", str(lock)]
        args += ["--plain-http", self.public.host]
        if target.tls:
            assert target.ca_file is not None
            args += ["--ca-file", str(target.ca_file)]
        else:
            args += ["--plain-http", target.host]
        stdin = None
        if target.username:
            args += ["--username", target.username, "--password-stdin"]
            stdin = f"{target.password}\n".encode()
        res = run_kferry(*args, stdin=stdin)
        assert res.code == 0, res.err
        return res

    def pull_secret(self, namespace: str, registry: Registry, name: str = "regcred") -> None:
        create_pull_secret(self.cluster, namespace, registry, name)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("node-site")
    ca = new_ca(work / "site-ca", name="kferry test Harbor CA")
    started: list[Registry] = []

    def registry(name: str, **kwargs: Any) -> Registry:
        r = start_registry(work / name, **kwargs)
        started.append(r)
        return r

    cluster = None
    try:
        public = registry("public", tls=False)
        locked = registry("locked", tls=True, auth="htpasswd", ca=ca)
        harbor = registry("harbor", tls=True, auth="htpasswd", ca=ca, password=secrets.token_hex(8))
        plain = registry("plain", tls=False)
        untrusted = registry("untrusted", tls=True)
        hosts = work / "certs.d"
        closed_port = free_port()
        (hosts / "docker.io").mkdir(parents=True)
        (hosts / "docker.io" / "hosts.toml").write_text(
            host_entry(f"http://127.0.0.1:{closed_port}", "the air-gapped node's Docker Hub")
        )
        for tls in (locked, harbor, untrusted):
            https_host(hosts, tls.host)
        assert harbor.username is not None and harbor.password is not None
        cluster = start_cluster(
            work / "cluster",
            node=True,
            hosts_dir=hosts,
            registry_cas=[ca.cert_file],
            registry_auths={harbor.host: (harbor.username, harbor.password)},
        )
        assert cluster.node is not None
        yield Site(
            cluster, cluster.node, public, locked, harbor, plain, untrusted, hosts, work,
            closed_port,
        )  # fmt: skip
    finally:
        if cluster is not None:
            cluster.stop()
        for r in reversed(started):
            r.stop()


def _digest_of(image_id: str) -> str:
    return image_id.rpartition("@")[2]


def _wait_all_ok(site: Site, ns: str, count: int, timeout: float = 180) -> list[dict[str, Any]]:
    def done(items: list[dict[str, Any]]) -> bool:
        if any(pull_failure(p) for p in items):
            raise AssertionError(
                {p["metadata"]["name"]: pull_failure(p) for p in items if pull_failure(p)}
            )
        return len(items) >= count and all(pod_succeeded_or_running(p) for p in items)

    return wait_pods(site.cluster, ns, done, what=f"{count} pods running", timeout=timeout)


# --------------------------------------------------------------------------------------------
# 1. Rewritten references, with a pull secret


def test_rewritten_references_run_with_pull_secret(site: Site) -> None:
    public = site.public
    images = {
        # Docker media type, nested path
        "frontend": push_runnable(
            public, "ml-pipeline/frontend", tag="2.0.0-alpha.5", media="docker"
        ),
        # OCI multi-arch index
        "controller": push_runnable_index(public, "kubeflow/notebook-controller", tag="v1.9.2"),
        # Docker manifest list, deeper path
        "authservice": push_runnable_index(
            public, "arrikto/kubeflow/oidc-authservice", tag="28c59ef", media="docker"
        ),
        # digest-only reference (what docker tag/push broke in the field report)
        "queue": push_runnable(public, "knative-releases/knative.dev/serving/cmd/queue"),
        # a Job and a CronJob's run
        "job": push_runnable(public, "kubeflow/training/job", tag="v1", cmd=["/bin/true"]),
        "cron": push_runnable(public, "kubeflow/katib/cron", tag="v1", cmd=["/bin/true"]),
        "init": push_runnable(public, "istio/proxyv2-init", tag="1.9.6", cmd=["/bin/true"]),
    }
    refs = {k: (i.ref if i.tag is None else i.tag_ref) for k, i in images.items()}
    manifests = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "frontend"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "frontend"}},
                "template": {
                    "metadata": {"labels": {"app": "frontend"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "initContainers": [{"name": "init", "image": refs["init"]}],
                        "containers": [
                            {"name": "frontend", "image": refs["frontend"]},
                            {"name": "controller", "image": refs["controller"]},
                            {"name": "authservice", "image": refs["authservice"]},
                            {"name": "queue", "image": refs["queue"]},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "train"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "train", "image": refs["job"]}],
                    }
                }
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "sweep"},
            "spec": {
                "schedule": "0 0 1 1 *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "metadata": {"labels": {"run": "cron"}},
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "sweep", "image": refs["cron"]}],
                            },
                        }
                    }
                },
            },
        },
    ]
    src = site.work / "app.yaml"
    src.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    lock = site.work / "rewritten.lock.json"
    site.mirror(site.locked, *refs.values(), lock=lock)
    res = run_kferry(
        "rewrite", str(src), "--to", f"{site.locked.host}/{PROJECT}", "--lock", str(lock),
        "--fix", "pull-secret=regcred",
    )  # fmt: skip
    assert res.code == 0, res.err
    rewritten = [d for d in yaml.safe_load_all(res.out) if d]
    text = yaml.safe_dump_all(rewritten)
    assert public.host not in text.replace(f"/{public.host.replace(':', '-')}/", "/")

    ns = site.namespace("rewritten")
    site.pull_secret(ns, site.locked)
    for obj in rewritten:
        site.cluster.apply(obj, ns)
    # A CronJob run: a Job made from its template now (what `kubectl create job --from`
    # does), instead of waiting for the schedule.
    cron = site.cluster.get(f"/apis/batch/v1/namespaces/{ns}/cronjobs/sweep")
    site.cluster.post(
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "sweep-manual"},
            "spec": cron["spec"]["jobTemplate"]["spec"],
        },
    )
    found = _wait_all_ok(site, ns, 3)
    by_repo = {i.repo: i.digest for i in images.values()}
    seen = 0
    for pod in found:
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            assert c["image"].startswith(f"{site.locked.host}/{PROJECT}/"), c["image"]
        for cs in (pod["status"].get("initContainerStatuses") or []) + pod["status"][
            "containerStatuses"
        ]:
            # (status.image may be the config digest when an image has several names)
            assert cs["imageID"].startswith(f"{site.locked.host}/{PROJECT}/"), cs["imageID"]
            repo = next(r for r in by_repo if cs["imageID"].split("@")[0].endswith("/" + r))
            assert _digest_of(cs["imageID"]) == by_repo[repo], (cs["name"], cs["imageID"])
            seen += 1
    assert seen == 7  # init + 4 in the Deployment, the Job's, the CronJob run's


# --------------------------------------------------------------------------------------------
# 2. The node path: a reference nobody rewrote


def _compiled_in_pod(ns: str, image: str, name: str = "default-image") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": ["/bin/true"]}],
        },
    }


@pytest.mark.parametrize("private", ["plain", "harbor"])
def test_node_path_uses_mirror_config(site: Site, private: str) -> None:
    """plain: the field report's plain-HTTP Harbor (``--plain-http``); harbor: TLS + htpasswd,
    the node's own credentials in containerd's config (hosts.toml cannot hold them)."""
    target: Registry = getattr(site, private)
    image = push_runnable(site.public, f"kserve/{private}/storage-initializer", tag="v0.14.0")
    lock = site.work / f"node-path-{private}.lock.json"
    site.mirror(target, image.tag_ref, lock=lock)
    host_dir = site.hosts / site.public.host
    ns = site.namespace(f"node-path-{private}")
    site.public.stop()  # the air gap: the public side is out of reach from here on
    try:
        # Without mirror configuration the node goes to the (unreachable) public registry.
        site.cluster.post(
            f"/api/v1/namespaces/{ns}/pods", _compiled_in_pod(ns, image.tag_ref, "without")
        )
        failed = wait_pods(
            site.cluster, ns, lambda ps: bool(ps) and pull_failure(ps[0]) is not None,
            what="the pull to fail", timeout=120,
        )  # fmt: skip
        _, message = pull_failure(failed[0]) or ("", "")
        assert "connection refused" in message, message

        args = [
            "mirror-config", image.tag_ref, "--to", f"{target.host}/{PROJECT}",
            "-o", str(site.hosts),
        ]  # fmt: skip
        if not target.tls:
            args += ["--plain-http", target.host]
        if target.username:
            args += ["--username", target.username]
        res = run_kferry(*args)
        assert res.code == 0, res.err
        assert (host_dir / "hosts.toml").exists()
        if target.username:
            assert f'registry.configs."{target.host}".auth' in res.err
            assert target.password and target.password not in res.err + res.out
        site.cluster.post(
            f"/api/v1/namespaces/{ns}/pods", _compiled_in_pod(ns, image.tag_ref, "with")
        )
        done = wait_pods(
            site.cluster, ns,
            lambda ps: any(
                p["metadata"]["name"] == "with" and p["status"].get("phase") == "Succeeded"
                for p in ps
            ),
            what="the mirrored pull", timeout=120,
        )  # fmt: skip
        pod = next(p for p in done if p["metadata"]["name"] == "with")
        status = pod["status"]["containerStatuses"][0]
        assert status["image"] == image.tag_ref  # the reference stayed what it was
        assert _digest_of(status["imageID"]) == image.digest
        assert f"/v2/{PROJECT}/" in target.logs()
    finally:
        for name in ("without", "with"):
            site.cluster.delete(f"/api/v1/namespaces/{ns}/pods/{name}")
        for f in host_dir.glob("*"):
            f.unlink()
        if host_dir.exists():
            host_dir.rmdir()
        site.public.restart()


# --------------------------------------------------------------------------------------------
# 3. The field report's failures, explained by kferry doctor


def test_field_report_failures_explained_by_doctor(site: Site) -> None:
    lock = site.work / "doctor.lock.json"
    present = push_runnable(site.public, "kubeflow/centraldashboard", tag="v1.9.0")
    site.mirror(site.locked, present.tag_ref, lock=lock)
    private = f"{site.locked.host}/{PROJECT}"
    kept = f"{private}/{site.public.host.replace(':', '-')}/kubeflow/centraldashboard:v1.9.0"
    # pushed to the untrusted registry too
    push_runnable(site.untrusted, f"{PROJECT}/kubeflow/centraldashboard", tag="v1.9.0")
    missing_source = push_runnable(site.public, "kubeflow/jupyter-web-app", tag="v1.9.0")
    # the lock names its source, as after a kferry mirror of the whole release in which
    # this image was then deleted from the registry
    kept_path = f"{private}/{site.public.host.replace(':', '-')}"
    gone = f"{kept_path}/kubeflow/jupyter-web-app:v1.9.0"
    entries = json.loads(lock.read_text())
    entries["images"].append(
        {
            "source": missing_source.tag_ref,
            "target": gone,
            "digest": missing_source.digest,
        }
    )
    lock.write_text(json.dumps(entries))
    ns = site.namespace("doctor")
    cases = {
        "untrusted-ca": f"{site.untrusted.host}/{PROJECT}/kubeflow/centraldashboard:v1.9.0",
        "no-credentials": kept,
        "docker-hub": "tensorflow/serving:1.14.0",
        "not-mirrored": gone,
    }
    site.pull_secret(ns, site.locked)
    for name, image in cases.items():
        pod = _compiled_in_pod(ns, image, name)
        if name == "not-mirrored":  # authenticated: the registry answers "not found"
            pod["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
        site.cluster.post(f"/api/v1/namespaces/{ns}/pods", pod)
    failed = wait_pods(
        site.cluster, ns,
        lambda ps: len(ps) == len(cases) and all(pull_failure(p) for p in ps),
        what="four pull failures", timeout=180,
    )  # fmt: skip
    messages = {p["metadata"]["name"]: (pull_failure(p) or ("", ""))[1] for p in failed}
    assert "x509" in messages["untrusted-ca"], messages
    assert "401" in messages["no-credentials"], messages
    assert "docker.io/library/tensorflow/serving" in messages["docker-hub"] or (
        "docker.io/tensorflow/serving" in messages["docker-hub"]
    ), messages
    assert "not found" in messages["not-mirrored"], messages

    res = run_kferry(
        "doctor", "-o", "json", "--registry", private, "--lock", str(lock), env=site.env()
    )
    assert res.code == 1, res.err
    findings = [f for f in json.loads(res.out) if f["object"].startswith(f"Pod/{ns}/")]
    by_pod: dict[str, list[dict[str, str]]] = {}
    for f in findings:
        by_pod.setdefault(f["object"].rsplit("/", 1)[1], []).append(f)
    assert sorted(by_pod) == sorted(cases), findings
    assert all(len(v) == 1 for v in by_pod.values()), by_pod
    say = {k: v[0] for k, v in by_pod.items()}
    assert "does not trust" in say["untrusted-ca"]["finding"]
    assert "CA" in say["untrusted-ca"]["fix"]
    assert "no pull secret" in say["no-credentials"]["finding"]
    assert "pull-secret=NAME" in say["no-credentials"]["fix"]
    assert "Docker Hub" in say["docker-hub"]["finding"]
    assert "kferry rewrite" in say["docker-hub"]["fix"]
    assert "not in the mirror" in say["not-mirrored"]["finding"]
    assert (
        say["not-mirrored"]["fix"]
        == f"copy it: kferry mirror {missing_source.tag_ref} --to {private}"
    )


# --------------------------------------------------------------------------------------------
# 4. kferry apply --wait


def test_apply_waits_for_deployments_and_stops_on_image_pull_backoff(site: Site) -> None:
    good = push_runnable(site.public, "kubeflow/profile-controller", tag="v1.9.0")
    lock = site.work / "apply.lock.json"
    site.mirror(site.plain, good.tag_ref, lock=lock)
    kept = f"{site.plain.host}/{PROJECT}/{site.public.host.replace(':', '-')}"
    target = f"{kept}/kubeflow/profile-controller:v1.9.0"
    ns = site.namespace("apply")

    def deployment(name: str, image: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": name, "image": image}],
                    },
                },
            },
        }

    ok_file = site.work / "ok.yaml"
    ok_file.write_text(yaml.safe_dump(deployment("profiles", target)))
    res = run_kferry("apply", str(ok_file), "--wait", "--timeout", "3m", env=site.env())
    assert res.code == 0, res.err
    assert f"Deployment/{ns}/profiles: available" in res.err
    assert "1 of 1 Deployments available" in res.out

    bad_file = site.work / "bad.yaml"
    missing = f"{site.plain.host}/{PROJECT}/kubeflow/not-there:v1"
    bad_file.write_text(yaml.safe_dump(deployment("broken", missing)))
    started = time.monotonic()
    res = run_kferry(
        "apply", str(bad_file), "--wait", "--timeout", "10m", "--registry",
        f"{site.plain.host}/{PROJECT}", env=site.env(),
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert res.code == 1, res.out + res.err
    assert f"FAILED Deployment/{ns}/broken" in res.out
    assert "is not in the mirror" in res.out and "fix: copy it: kferry mirror" in res.out
    assert elapsed < 300, "ran into the timeout instead of stopping on the pull failure"


# --------------------------------------------------------------------------------------------
# 5. kferry users add restarts a Dex that runs as a pod on the node


def test_users_add_restarts_dex_pod_and_waits_for_rollout(site: Site) -> None:
    from tests.support.dex import dex_binary
    from tests.support.runnable import push_program
    from tests.test_users import corpus_object, dex_objects

    image = push_program(
        site.plain, f"{PROJECT}/ghcr.io/dexidp/dex", dex_binary(), tag="v2.39.1",
        dest="/usr/local/bin/dex",
    )  # fmt: skip
    ns = site.namespace("dex")
    site.cluster.apply(corpus_object("v1.9.1", "CustomResourceDefinition", "profiles.kubeflow.org"))
    for obj in dex_objects("v1.9.1"):
        obj["metadata"]["namespace"] = ns
        if obj["kind"] == "ConfigMap":
            config = yaml.safe_load(obj["data"]["config.yaml"])
            # No Kubernetes storage from inside this pod (no service network here).
            config["storage"] = {"type": "memory"}
            obj["data"]["config.yaml"] = yaml.safe_dump(config, sort_keys=False)
        if obj["kind"] == "Deployment":
            spec = obj["spec"]["template"]["spec"]
            spec["containers"][0]["image"] = image.tag_ref
            spec["terminationGracePeriodSeconds"] = 1
            spec["containers"][0]["readinessProbe"] = {
                "httpGet": {"path": "/dex/healthz", "port": 5556},
                "periodSeconds": 1,
            }
        site.cluster.apply(obj, ns)
    first = _wait_all_ok(site, ns, 1, timeout=180)
    first_pod = first[0]["metadata"]["name"]
    password = secrets.token_urlsafe(12)
    res = run_kferry(
        "users", "add", "ada@example.com", "--password-stdin", "--dex-namespace", ns,
        "-o", "json", stdin=f"{password}\n".encode(), env=site.env(),
    )  # fmt: skip
    assert res.code == 0, res.err
    assert password not in res.out + res.err
    out = json.loads(res.out)
    assert (out["restarted"], out["rollout"]) == (True, "complete"), out
    # The rollout really happened on the node: a new Dex pod, ready, reading the new config.
    now = [p for p in _wait_all_ok(site, ns, 1) if not p["metadata"].get("deletionTimestamp")]
    names = {p["metadata"]["name"] for p in now}
    assert first_pod not in names and len(names) == 1, names
    pod = now[0]
    assert all(cs["ready"] for cs in pod["status"]["containerStatuses"])
    log = site.cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log")
    assert "listening" in log.text.lower(), log.text[-2000:]
