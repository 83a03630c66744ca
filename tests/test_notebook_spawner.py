"""``kferry notebook add|list|remove`` against a real API server, on the shipped renders.

Each test installs the jupyter-web-app ConfigMap (its generated name) and Deployment of a
render into its own namespace (``--namespace``; ``kubeflow`` in a real installation): v1.4.1
on a Kubernetes 1.21 API server (what 1.4 ran on), 26.03 on the current one. kferry must find
the ConfigMap through the Deployment's volume, change only the lines of the image list, and
restart the Deployment.
"""

from __future__ import annotations

import copy
import difflib
import gzip
import json
from functools import cache
from typing import Any

import pytest
import yaml

from kferry.notebook.spawner import edit_add, edit_remove
from tests.conftest import release_path, run_kferry
from tests.support.cluster_fixtures import Kube

Obj = dict[str, Any]
KEY = "spawner_ui_config.yaml"
IMAGE = "harbor.example:8443/team/notebook:1"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
LAYOUTS = {"v1.4.1": "kube_121", "26.03": "kube"}


@cache
def web_app(release: str) -> tuple[Obj, Obj]:
    text = gzip.decompress(release_path(release).read_bytes()).decode()
    docs = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and KEY in (d.get("data") or {}))
    dep = next(
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "jupyter-web-app-deployment"
    )
    return cm, dep


def install(kube: Kube, release: str) -> tuple[str, str]:
    cm, dep = (copy.deepcopy(o) for o in web_app(release))
    for obj in (cm, dep):
        obj["metadata"]["namespace"] = kube.namespace
        kube.apply(obj)
    return cm["metadata"]["name"], cm["data"][KEY]


def kferry_nb(kube: Kube, *args: str):
    return run_kferry(
        "notebook", *args, "--namespace", kube.namespace, "--kubeconfig", str(kube.kubeconfig)
    )


def stored(kube: Kube, name: str) -> str:
    return str(kube.cluster.get(kube.ns_path("configmaps", name))["data"][KEY])


def restarted_at(kube: Kube) -> str | None:
    dep = kube.cluster.get(kube.ns_path("deployments", "jupyter-web-app-deployment", "apps/v1"))
    return (dep["spec"]["template"]["metadata"].get("annotations") or {}).get(RESTARTED_AT)


@pytest.fixture(params=list(LAYOUTS))
def site(request: pytest.FixtureRequest) -> tuple[Kube, str, str, str]:
    release = request.param
    kube: Kube = request.getfixturevalue(LAYOUTS[release])
    name, text = install(kube, release)
    return kube, release, name, text


@pytest.mark.cluster
def test_add_list_remove_keeps_every_other_line(site):
    kube, _release, name, original = site
    assert name.startswith("jupyter-web-app-config-") and name != "jupyter-web-app-config"

    r = kferry_nb(kube, "add", IMAGE, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["action"] == "added"
    assert json.loads(r.out)["restarted"] is True
    after = stored(kube, name)
    diff = [
        line
        for line in difflib.unified_diff(original.splitlines(), after.splitlines(), lineterm="")
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert diff == [f"+    - {IMAGE}"]
    assert "# The list of available standard container Images" in after or "# the list" in after
    assert IMAGE in yaml.safe_load(after)["spawnerFormDefaults"]["image"]["options"]
    first_restart = restarted_at(kube)
    assert first_restart is not None

    again = kferry_nb(kube, "add", IMAGE, "--json")
    assert again.code == 0 and json.loads(again.out)["action"] == "unchanged"
    assert stored(kube, name) == after

    rs = kferry_nb(kube, "add", "harbor.example/team/rstudio:1", "--group", "rstudio")
    assert rs.code == 0, rs.err
    listed = kferry_nb(kube, "list", "--json")
    assert listed.code == 0, listed.err
    groups = json.loads(listed.out)["groups"]
    assert IMAGE in groups["jupyter"]["images"]
    assert groups["rstudio"]["images"][-1] == "harbor.example/team/rstudio:1"
    assert groups["vscode"]["default"] in groups["vscode"]["images"]

    gone = kferry_nb(kube, "remove", IMAGE)
    assert gone.code == 0, gone.err
    gone = kferry_nb(kube, "remove", "harbor.example/team/rstudio:1")
    assert gone.code == 0, gone.err
    assert stored(kube, name) == original


@pytest.mark.cluster
def test_default_image_is_not_removed(site):
    kube, _release, name, original = site
    default = yaml.safe_load(original)["spawnerFormDefaults"]["image"]["value"]
    r = kferry_nb(kube, "remove", default, "--group", "jupyter")
    assert r.code == 2
    assert "default image of the jupyter group" in r.err and "Traceback" not in r.err
    assert stored(kube, name) == original


@pytest.mark.cluster
def test_no_web_app_is_said_plainly(kube):
    r = kferry_nb(kube, "list")
    assert r.code == 1
    assert f"no ConfigMap with {KEY} in namespace {kube.namespace}" in r.err


def test_flow_lists_are_edited_in_place():
    text = (
        "# admin notes\nspawnerFormDefaults:\n  image:\n    value: a:1\n    options: [a:1]  # x\n"
    )
    added = edit_add(text, "jupyter", IMAGE, "t")
    assert added == text.replace("[a:1]", f"[a:1, {IMAGE}]")
    assert edit_remove(added, "jupyter", IMAGE, "t") == text
