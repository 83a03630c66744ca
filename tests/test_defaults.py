"""Compiled-in defaults per upstream release, loud assumptions, overrides, site catalogs.

The per-release expectations (tests/data/defaults/releases.yaml) were read from the upstream
source at each tag, not from kferry's catalog, and each cites ``owner/repo@tag path:line``.
"""

from __future__ import annotations

import gzip
import json
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from kferry.discover import discover
from kferry.load import Source, load_objects
from kferry.name import canonical
from tests.conftest import DATA, release_path, run_kferry

TO = "harbor.example.com:8443/kubeflow"
LAUNCHER_230 = (
    "gcr.io/ml-pipeline/kfp-launcher@sha256:"
    "bef55a344574a25c557256d7c66cb19edacfd2008d694e5b6bb5b612d59feae0"
)
LAUNCHER_203 = (
    "gcr.io/ml-pipeline/kfp-launcher@sha256:"
    "50151a8615c8d6907aa627902dce50a2619fd231f25d1e5c2a72737a2ea4001e"
)


@cache
def cases() -> list[dict[str, Any]]:
    data = yaml.safe_load((DATA / "defaults" / "releases.yaml").read_text())
    out: list[dict[str, Any]] = data["cases"]
    return out


def controller(
    image: str,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    kind: str = "Deployment",
    configmaps: dict[str, dict[str, str]] | None = None,
) -> str:
    container: dict[str, Any] = {"name": "manager", "image": image}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if args:
        container["args"] = args
    docs = [
        {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": "controller", "namespace": "ns"},
            "spec": {"template": {"spec": {"containers": [container]}}},
        }
    ]
    for name, data in (configmaps or {}).items():
        docs.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}
            | {"data": data}
        )
    return yaml.safe_dump_all(docs)


@pytest.mark.parametrize("case", cases(), ids=[c["release"] for c in cases()])
def test_each_release_pulls_what_its_code_says_and_nothing_else(case: dict[str, Any]) -> None:
    assert case["cite"].split("@")[0].count("/") == 1, case["cite"]  # owner/repo@...
    objects, _ = load_objects(
        [
            Source(
                "c.yaml",
                controller(
                    case["image"],
                    case.get("env"),
                    case.get("args"),
                    case.get("kind", "Deployment"),
                    case.get("configmap"),
                ),
            )
        ]
    )
    inventory = discover(objects)
    got = {i.canonical for i in inventory.images} - {canonical(case["image"])}
    assert got == {canonical(w) for w in case["want"]}, case["cite"]
    assert inventory.assumptions == [], [a.message() for a in inventory.assumptions]


@cache
def render(release: str) -> str:
    return gzip.decompress(release_path(release).read_bytes()).decode()


def edited(tmp_path: Path, release: str, old: str, new: str) -> Path:
    text = render(release)
    assert old in text
    out = tmp_path / f"{release}-edited.yaml"
    out.write_text(text.replace(old, new))
    return out


def assumed_locations(out: str) -> dict[str, list[dict[str, Any]]]:
    got: dict[str, list[dict[str, Any]]] = {}
    for img in json.loads(out):
        for loc in img["locations"]:
            if loc.get("assumed"):
                got.setdefault(img["image"], []).append(loc)
    return got


def test_an_unlisted_training_operator_commit_is_said_out_loud(tmp_path: Path) -> None:
    path = edited(
        tmp_path, "v1.9.1", "training-operator:v1-04f9f13", "training-operator:v1-0badc0d"
    )
    res = run_kferry("images", "-o", "json", str(path))
    assert res.code == 0, res.err
    lines = [line for line in res.err.splitlines() if "v1-0badc0d" in line]
    assert len(lines) == 1, res.err
    line = lines[0]
    assert "kubeflow training-operator (v1)" in line
    assert "Deployment/kubeflow/training-operator" in line
    assert "v1.9.4, the newest known" in line  # the commit is on no release line
    assert "docker.io/library/alpine:3.10" in line
    assert "ghcr.io/kubeflow/training-v1/kubectl-delivery:latest" in line
    assert "kferry mirror-config covers them either way" in line
    got = assumed_locations(res.out)
    assert set(got) == {
        "docker.io/library/alpine:3.10",
        "ghcr.io/kubeflow/training-v1/kubectl-delivery:latest",
    }
    for locs in got.values():
        assert [(loc["assumed"], loc["rule_version"]) for loc in locs] == [(True, "v1.9.4")]
        assert list(locs[0]) == ["object", "path", "how", "assumed", "rule_version"]


def test_a_kfp_version_without_a_rule_is_said_out_loud(tmp_path: Path) -> None:
    path = edited(tmp_path, "v1.9.1", "api-server:2.3.0", "api-server:2.3.7")
    res = run_kferry("images", "-o", "json", str(path))
    assert res.code == 0, res.err
    (line,) = [line for line in res.err.splitlines() if "2.3.7" in line]
    assert "kubeflow/pipelines api-server 2.3.7 (Deployment/kubeflow/ml-pipeline)" in line
    assert "assuming the rules of 2.3.0, the nearest older known" in line
    assert LAUNCHER_230 in line and "kfp-driver@sha256:dc8b56a2" in line
    got = assumed_locations(res.out)
    assert LAUNCHER_230 in got
    assert {loc["rule_version"] for locs in got.values() for loc in locs} == {"2.3.0"}
    # the shipped render is known exactly: nothing on stderr, no "assumed" key
    plain = run_kferry("images", "-o", "json", str(release_path("v1.9.1")))
    assert plain.err == "" and assumed_locations(plain.out) == {}


def test_rewrite_sets_an_override_only_where_the_version_reads_it(tmp_path: Path) -> None:
    # KFP 2.3.0 reads V2_LAUNCHER_IMAGE (kubeflow/pipelines@2.3.0 container.go:34)
    out = tmp_path / "230.yaml"
    res = run_kferry("rewrite", str(release_path("v1.9.1")), "--to", TO, "-o", str(out))
    assert res.code == 0, res.err
    assert "env V2_LAUNCHER_IMAGE now names the mirrored " + LAUNCHER_230 in res.err
    assert f'{{name: V2_LAUNCHER_IMAGE, value: "{TO}/{LAUNCHER_230}"}}' in out.read_text()
    # KFP 2.0.3 hard-codes it (argo.go:120) and ignores the env var: never "rewritten"
    path = edited(tmp_path, "v1.9.1", "api-server:2.3.0", "api-server:2.0.3")
    out = tmp_path / "203.yaml"
    res = run_kferry("rewrite", str(path), "--to", TO, "-o", str(out))
    assert res.code == 0, res.err
    assert "V2_LAUNCHER_IMAGE now names" not in res.err
    assert (
        f"needs node mirror configuration: {LAUNCHER_203} (Deployment/kubeflow/ml-pipeline "
        "pulls it by compiled-in default and this version does not read V2_LAUNCHER_IMAGE)"
    ) in res.err
    assert "V2_LAUNCHER_IMAGE" not in out.read_text()


def test_rewrite_of_an_unknown_version_is_loud_too(tmp_path: Path) -> None:
    path = edited(tmp_path, "v1.9.1", "api-server:2.3.0", "api-server:2.3.7")
    res = run_kferry("rewrite", str(path), "--to", TO, "-o", str(tmp_path / "o.yaml"))
    assert res.code == 0, res.err
    assert sum("kubeflow/pipelines api-server 2.3.7" in ln for ln in res.err.splitlines()) == 1


SITE = textwrap.dedent(
    """\
    components:
      - id: acme-operator
        name: acme operator
        detect: {kinds: [Deployment], images: [acme/operator]}
    defaults:
      - id: acme-helper
        component: acme-operator
        override: {arg: --helper-image, from: "1.0.0"}
        optional: null
        note: helper pod
        rules:
          - from: "1.0.0"
            to: "1.9.0"
            image: registry.acme.example/helper:{tag}
            source: acme/operator@v1.9.0 pkg/defaults.go:12
    """
)
ACME = controller("registry.acme.example/acme/operator:v1.2.0")


def test_a_site_catalog_adds_a_component(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    manifest = tmp_path / "acme.yaml"
    manifest.write_text(ACME)
    res = run_kferry("images", "-o", "list", "--catalog", str(site), str(manifest))
    assert res.code == 0, res.err
    assert "registry.acme.example/helper:v1.2.0" in res.out.splitlines()
    env = run_kferry("images", "-o", "list", str(manifest), env={"KFERRY_CATALOG": str(site)})
    assert env.out == res.out
    assert "registry.acme.example/helper" not in run_kferry("images", str(manifest)).out
    listed = run_kferry("catalog", "-o", "json", "--catalog", str(site))
    entry = next(e for e in json.loads(listed.out) if e["id"] == "acme-helper")
    assert entry["origin"] == str(site) and entry["rules"][0]["from"] == "1.0.0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            SITE.replace("image: registry.acme.example/helper:{tag}", "image: 'a b'"),
            "defaults[0] (acme-helper) rules[0]: image 'a b' is not an image reference",
        ),
        (
            SITE.replace("component: acme-operator", "component: nope"),
            "defaults[0] (acme-helper): unknown component 'nope'",
        ),
        (
            SITE.replace('to: "1.9.0"', 'to: "0.9"'),
            "defaults[0] (acme-helper) rules[0]: 'to' 0.9 is older than 'from' 1.0.0",
        ),
        (
            SITE.replace("detect: {kinds: [Deployment], images: [acme/operator]}", "x: 1"),
            "components[0] (acme-operator): missing 'detect'",
        ),
        ("defaults: [\n", "not valid YAML"),
        ("rules: []\n", "unknown key 'rules'"),
    ],
)
def test_a_bad_site_catalog_is_exit_2_naming_file_and_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(text)
    manifest = tmp_path / "acme.yaml"
    manifest.write_text(ACME)
    res = run_kferry("images", "--catalog", str(site), str(manifest))
    assert res.code == 2, res.err
    assert res.err.startswith(f"kferry: error: {site}") and message in res.err, res.err
    assert "Traceback" not in res.err and res.err.count("\n") == 1


def test_a_missing_site_catalog_is_exit_2(tmp_path: Path) -> None:
    res = run_kferry(
        "images", "--catalog", str(tmp_path / "none.yaml"), str(release_path("v1.4.1"))
    )
    assert res.code == 2 and "none.yaml" in res.err and "Traceback" not in res.err


def test_catalog_lists_components_versions_and_sources() -> None:
    res = run_kferry("catalog", "-o", "json")
    assert res.code == 0, res.err
    entries = {e["id"]: e for e in json.loads(res.out)}
    launcher = entries["kfp-v2-launcher"]
    assert launcher["override"] == "env V2_LAUNCHER_IMAGE from 2.0.5"
    spans = [(r["from"], r["to"]) for r in launcher["rules"]]
    assert ("2.0.3", "2.0.4") in spans and ("2.5.0", "2.17.0") in spans
    rule = next(r for r in launcher["rules"] if r["from"] == "2.0.3")
    assert rule["source"].startswith("kubeflow/pipelines@2.0.4 backend/src/v2/compiler/")
    assert rule["tags_read"] == ["2.0.3", "2.0.4"]
    table = run_kferry("catalog")
    assert table.code == 0 and "kfp-v2-launcher" in table.out


def test_catalog_check_reports_exact_assumed_and_unknown(tmp_path: Path) -> None:
    res = run_kferry("catalog", "check", "-o", "json", str(release_path("v1.9.1")))
    assert res.code == 0, res.err
    rows = json.loads(res.out)
    known = {r["object"]: r for r in rows if r["component"]}
    assert {r["status"] for r in known.values()} == {"exact"}
    assert known["Deployment/kubeflow/training-operator"]["version"] == "1.8.1"
    assert any(r["status"] == "unknown" for r in rows)  # e.g. katib: not in the catalog
    path = edited(tmp_path, "v1.9.1", "api-server:2.3.0", "api-server:2.3.7")
    res = run_kferry("catalog", "check", str(path))
    assert res.code == 0, res.err
    (line,) = [ln for ln in res.out.splitlines() if ln.startswith("assumed")]
    assert "Deployment/kubeflow/ml-pipeline" in line
    assert "1 assumed" in res.out


def test_the_readme_site_catalog_example_follows_the_schema(tmp_path: Path) -> None:
    readme = (DATA.parent.parent / "README.md").read_text()
    block = "components:" + readme.split("```yaml\ncomponents:", 1)[1].split("```", 1)[0]
    site = tmp_path / "readme.yaml"
    site.write_text(block)
    manifest = tmp_path / "acme.yaml"
    manifest.write_text(controller("acme/operator:v1-9f8e7d6"))
    res = run_kferry("images", "-o", "list", "--catalog", str(site), str(manifest))
    assert res.code == 0 and res.err == "", res.err
    assert "registry.acme.example/helper:v1-9f8e7d6" in res.out  # the commit is v1.2.0


def test_an_untagged_controller_image_is_assumed_loudly() -> None:
    # Kubeflow 1.10.0's render names kubeflow/training-operator without a tag (its
    # kustomization's images: entry names ghcr.io/kubeflow/training-v1/training-operator)
    objects, _ = load_objects([Source("c.yaml", controller("kubeflow/training-operator"))])
    inventory = discover(objects)
    (a,) = inventory.assumptions
    assert a.seen == "latest (no tag)" and a.rule_version == "v1.9.4"
    assert "the newest known" in a.message()
    assert "ghcr.io/kubeflow/training-v1/kubectl-delivery:latest" in a.images


def test_a_site_entry_replaces_the_built_in_one_with_its_id(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        textwrap.dedent(
            """\
            defaults:
              - id: kfp-v2-launcher
                component: kfp-api-server
                override: {env: V2_LAUNCHER_IMAGE, from: "2.0.5"}
                optional: null
                note: our patched KFP
                rules:
                  - {from: "2.3.7", to: "2.3.7", image: "reg.example/kfp-launcher:2.3.7",
                     source: "example/pipelines@2.3.7 container.go:33"}
            """
        )
    )
    path = edited(tmp_path, "v1.9.1", "api-server:2.3.0", "api-server:2.3.7")
    res = run_kferry("images", "-o", "json", "--catalog", str(site), str(path))
    assert res.code == 0, res.err
    images = {i["image"]: i for i in json.loads(res.out)}
    assert "reg.example/kfp-launcher:2.3.7" in images
    assert LAUNCHER_230 not in images
    (line,) = [ln for ln in res.err.splitlines() if "2.3.7" in ln]  # the driver is still assumed
    assert "kfp-driver@sha256:dc8b56a2" in line and "kfp-launcher" not in line


@cache
def render_expectations() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = yaml.safe_load(
        (DATA / "defaults" / "renders" / "expected.yaml").read_text()
    )
    return data


@pytest.mark.parametrize("release", sorted(render_expectations()))
def test_each_rendered_kubeflow_release_lists_exactly_its_defaults(release: str) -> None:
    want = render_expectations()[release]
    path = DATA / "defaults" / "renders" / f"kubeflow-{release}.yaml.gz"
    res = run_kferry("images", "-o", "json", str(path))
    assert res.code == 0, res.err
    got = {
        i["image"]
        for i in json.loads(res.out)
        if all(loc["how"] == "default" for loc in i["locations"])
    }
    assert got == {canonical(i) for i in want["defaults"]}
    for cite in want["defaults"].values():
        assert cite.split("@")[0].count("/") == 1, cite
    said = [ln for ln in res.err.splitlines() if "no catalog rule covers" in ln]
    assert len(said) == len(want["assumed"]) == len(res.err.splitlines()), res.err
    for name in want["assumed"]:
        assert any(name in ln for ln in said), (name, said)
