"""`kferry rewrite`: every reference to the private registry, nothing else, fixes by name."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # kubernetes_validate's own validator
import kubernetes_validate
import pytest
import yaml

from kferry.load import Source, load_objects
from kferry.pipeline import rewrite_manifests
from kferry.plan import Target
from tests.conftest import RELEASES, release_path, run_kferry

TO = "harbor.example.com:8443/kubeflow"
HOST = "harbor.example.com:8443"


@cache
def original(release: str) -> str:
    return gzip.decompress(release_path(release).read_bytes()).decode()


@cache
def rewritten(release: str, layout: str, tmp: Path) -> tuple[str, str]:
    out = tmp / f"{release}-{layout}.yaml"
    res = run_kferry(
        "rewrite", str(release_path(release)), "--to", TO, "--layout", layout, "-o", str(out)
    )
    assert res.code == 0, res.err
    return out.read_text(), res.err


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rewrite")


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d]


class Docs:
    """The documents of a render, parsed only when asked for: constructing all of a 12 MB
    render's objects takes seconds, the few a test looks at milliseconds. Renders separate
    documents with ``---`` lines (kustomize's output), so the text splits there."""

    def __init__(self, text: str) -> None:
        self.texts = [t for t in re.split(r"^---[ \t]*\n", text, flags=re.M) if t.strip()]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        line = re.compile(rf"^kind: {re.escape(kind)}$", re.M)
        docs = (_parsed(t) for t in self.texts if line.search(t))
        return [d for d in docs if d.get("kind") == kind]

    def find(self, kind: str, name: str) -> dict[str, Any]:
        return next(d for d in self.of_kind(kind) if d["metadata"]["name"] == name)


@cache
def _parsed(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.load(text, Loader=yaml.CSafeLoader)
    return doc


@cache
def original_docs(release: str) -> Docs:
    return Docs(original(release))


@cache
def _validator(api_version: str, kind: str) -> Any:
    """kubernetes_validate's own strict schema for one kind, built once (its ``validate``
    reads the schema files and rebuilds the schema registry on every call)."""
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    version = kubernetes_validate.latest_version()
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        return None  # custom resources: no built-in schema
    defs = utils.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["keep", "drop-host", "flat"])
@pytest.mark.parametrize("release", RELEASES)
def test_only_private_images_remain(release: str, layout: str, tmp_module: Path) -> None:
    _text, report = rewritten(release, layout, tmp_module)
    out = tmp_module / f"{release}-{layout}.yaml"
    res = run_kferry("images", "-o", "json", str(out))
    assert res.code == 0, res.err
    public = {i["image"]: i for i in json.loads(res.out) if not i["image"].startswith(TO + "/")}
    for image, info in public.items():
        # only compiled-in defaults with no override this version reads, and they are named
        assert {loc["how"] for loc in info["locations"]} == {"default"}, image
        assert f"needs node mirror configuration: {image}" in report


@pytest.mark.slow
@pytest.mark.parametrize("release", RELEASES)
def test_same_documents_and_objects(release: str, tmp_module: Path) -> None:
    text, _ = rewritten(release, "keep", tmp_module)
    before, _ = load_objects([Source("in", original(release))])
    after, _ = load_objects([Source("out", text)])
    assert [(o.document.index, o.kind, o.namespace, o.name) for o in before] == [
        (o.document.index, o.kind, o.namespace, o.name) for o in after
    ]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["keep", "flat"])
@pytest.mark.parametrize("release", RELEASES)
def test_line_diff_touches_only_references_and_named_fixes(
    release: str, layout: str, tmp_module: Path
) -> None:
    text, report = rewritten(release, layout, tmp_module)
    before = tmp_module / f"{release}-original.yaml"
    if not before.exists():
        before.write_text(original(release))
    after = tmp_module / f"{release}-{layout}.yaml"
    assert after.read_text() == text
    # GNU diff (an independent program) pairs the lines: "NcM", "NaM" or "NdM" hunks, then
    # "< old" and "> new" lines
    diff = subprocess.run(
        ["diff", str(before), str(after)], capture_output=True, text=True, check=False
    )
    assert diff.returncode == 1, diff.stderr
    for line in diff.stdout.splitlines():
        if re.fullmatch(r"[0-9,]+[acd][0-9,]+", line):
            assert "d" not in line, line  # default fixes delete nothing
        elif line.startswith("> "):
            # a target reference, or the Knative skip-list line of the default fix
            assert TO in line or (HOST in line and "egistr" in line), line
    assert "fix knative-skip-tag-resolution" in report


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["keep", "drop-host", "flat"])
@pytest.mark.parametrize("release", RELEASES)
def test_changed_objects_pass_schema_validation(
    release: str, layout: str, tmp_module: Path
) -> None:
    checked = 0
    text, _ = rewritten(release, layout, tmp_module)
    for before, after in zip(original_docs(release).texts, Docs(text).texts, strict=True):
        if before == after:
            continue
        obj = _parsed(after)
        validator = _validator(obj["apiVersion"], obj["kind"])
        if validator is not None:
            validator.validate(obj)
            checked += 1
    assert checked > 30


def test_references_in_every_scalar_style() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c, namespace: ns}
        data:
          plain: x
          TOOL_IMAGE: 'quay.io/a/tool:1'
          config.json: |
            {
              "image" : "kserve/agent:v1",
              "other": "keep me"
            }
          folded: "spawnerFormDefaults:\\n  image:\\n    value: ghcr.io/nb/lab:v2\\n"
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d, namespace: ns}
        spec:
          template:
            spec:
              containers:
              - name: c
                image: "busybox:1.36"   # a comment stays
                args: ["sh -c 'run --a-image=quay.io/x/a:1 --b-image=quay.io/x/b:1'"]
                env:
                - {name: HELPER_IMAGE, value: gcr.io/h/helper@sha256:%s}
        """
        % ("a" * 64)
    )
    outcome = rewrite_manifests([Source("t.yaml", text)], Target.parse("reg.local/kf"))
    want = text
    for old, new in [
        ("'quay.io/a/tool:1'", "'reg.local/kf/quay.io/a/tool:1'"),
        ('"kserve/agent:v1"', '"reg.local/kf/docker.io/kserve/agent:v1"'),
        ("ghcr.io/nb/lab:v2", "reg.local/kf/ghcr.io/nb/lab:v2"),
        ('"busybox:1.36"', '"reg.local/kf/docker.io/library/busybox:1.36"'),
        ("quay.io/x/a:1", "reg.local/kf/quay.io/x/a:1"),
        ("quay.io/x/b:1", "reg.local/kf/quay.io/x/b:1"),
        ("gcr.io/h/helper@", "reg.local/kf/gcr.io/h/helper@"),
    ]:
        assert want.count(old) == 1, old
        want = want.replace(old, new)
    assert outcome.text == want
    assert outcome.references == 7


def test_composed_images_are_rewritten_at_their_parts() -> None:
    values = json.dumps(
        {
            "global": {
                "hub": "docker.io/istio",
                "tag": "1.9.6",
                "proxy": {"image": "proxyv2"},
                "proxy_init": {"image": "proxyv2"},
            }
        },
        indent=2,
    )
    predictors = json.dumps(
        {
            "tensorflow": {
                "image": "tensorflow/serving",
                "defaultImageVersion": "1.14.0",
                "defaultGpuImageVersion": "1.14.0-gpu",
            }
        },
        indent=2,
    )
    text = yaml.safe_dump_all(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "istio-sidecar-injector", "namespace": "istio-system"},
                "data": {"values": values},
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "inferenceservice-config", "namespace": "kubeflow"},
                "data": {"predictors": predictors},
            },
        ]
    )
    for layout, hub, image in [
        ("keep", "reg.local/kf/docker.io/istio", "proxyv2"),
        ("flat", "docker.io/istio", "reg.local/kf/docker.io__istio__proxyv2:1.9.6"),
    ]:
        out = rewrite_manifests([Source("t", text)], Target.parse("reg.local/kf", layout))
        objs = docs_of(out.text)
        got = json.loads(objs[0]["data"]["values"])["global"]
        assert (got["hub"], got["proxy"]["image"], got["tag"]) == (hub, image, "1.9.6")
        tf = json.loads(objs[1]["data"]["predictors"])["tensorflow"]
        assert tf["defaultImageVersion"] == "1.14.0"
        repo = "reg.local/kf/" + (
            "docker.io/tensorflow/serving" if layout == "keep" else "docker.io__tensorflow__serving"
        )
        assert tf["image"] == repo


def test_pin_digests_from_the_lock(tmp_path: Path) -> None:
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\n"
        "spec:\n  containers:\n  - {name: c, image: 'busybox:1.36'}\n"
    )
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(pod)
    digest = "sha256:" + "d" * 64
    lock = tmp_path / "kferry.lock.json"
    lock.write_text(
        json.dumps(
            {
                "version": 1,
                "images": [
                    {
                        "source": "docker.io/library/busybox:1.36",
                        "target": "reg.local/kf/docker.io/library/busybox:1.36",
                        "digest": digest,
                        "mediaType": "x",
                        "size": 1,
                    }
                ],
            }
        )
    )
    res = run_kferry(
        "rewrite", str(manifest), "--to", "reg.local/kf", "--lock", str(lock), "--pin-digests"
    )
    assert res.code == 0, res.err
    assert f"image: 'reg.local/kf/docker.io/library/busybox:1.36@{digest}'" in res.out
    lock.write_text(json.dumps({"version": 1, "images": []}))
    res = run_kferry(
        "rewrite",
        str(manifest),
        "--to",
        "reg.local/kf",
        "--lock",
        str(lock),
        "--pin-digests",
        "-o",
        str(tmp_path / "out.yaml"),
    )
    # an empty lock records none of the render's images (tests/test_targets.py)
    assert res.code == 2 and "records none of the 1 images" in res.err
    assert not (tmp_path / "out.yaml").exists()  # nothing written on error


@cache
def fixed(release: str, *fixes: str) -> tuple[Docs, str]:
    args = [a for f in fixes for a in ("--fix", f)]
    res = run_kferry("rewrite", str(release_path(release)), "--to", TO, *args)
    assert res.code == 0, res.err
    return Docs(res.out), res.err


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def env_of(deployment: dict[str, Any], container: str) -> dict[str, Any]:
    c = next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == container
    )
    return {e["name"]: e.get("value") for e in c.get("env") or []}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("release", "key"),
    [
        ("v1.4.1", "registriesSkippingTagResolving"),
        ("v1.9.1", "registries-skipping-tag-resolving"),
        ("26.03", "registries-skipping-tag-resolving"),
    ],
)
def test_knative_skip_list_uses_the_key_that_version_reads(
    release: str, key: str, tmp_module: Path
) -> None:
    _text, report = rewritten(release, "keep", tmp_module)  # the default fixes
    data = Docs(_text).find("ConfigMap", "config-deployment")
    assert data["data"][key].split(",")[-1] == HOST
    assert "kind.local" in data["data"][key]
    assert "fix knative-skip-tag-resolution" in report
    # --no-fix leaves the ConfigMap as it was (shown on the ConfigMap alone)
    alone = tmp_module / f"{release}-config-deployment.yaml"
    alone.write_text(yaml.safe_dump(original_docs(release).find("ConfigMap", "config-deployment")))
    res = run_kferry("rewrite", str(alone), "--to", TO)
    assert res.code == 0, res.err
    assert key in find(docs_of(res.out), "ConfigMap", "config-deployment")["data"]
    res = run_kferry("rewrite", str(alone), "--to", TO, "--no-fix", "knative-skip-tag-resolution")
    assert res.code == 0, res.err
    assert key not in find(docs_of(res.out), "ConfigMap", "config-deployment")["data"]


@pytest.mark.slow
@pytest.mark.parametrize("release", ["v1.4.1", "26.03"])
def test_insecure_cookies(release: str) -> None:
    docs, report = fixed(release, "insecure-cookies")
    for name, container in [
        ("jupyter-web-app-deployment", "jupyter-web-app"),
        ("volumes-web-app-deployment", "volumes-web-app"),
        ("ml-pipeline-ui", "ml-pipeline-ui"),
    ]:
        assert env_of(docs.find("Deployment", name), container)["APP_SECURE_COOKIES"] == "false"
    assert "fix insecure-cookies" in report


@pytest.mark.slow
def test_istio_first_party_jwt_changes_everything_the_setting_controls() -> None:
    docs, report = fixed("v1.4.1", "istio-first-party-jwt")
    values = json.loads(docs.find("ConfigMap", "istio-sidecar-injector")["data"]["values"])
    assert values["global"]["jwtPolicy"] == "first-party-jwt"
    for name, container in [("istiod", "discovery"), ("istio-ingressgateway", "istio-proxy")]:
        d = docs.find("Deployment", name)
        assert env_of(d, container)["JWT_POLICY"] == "first-party-jwt"
        spec = d["spec"]["template"]["spec"]
        assert "istio-token" not in [v["name"] for v in spec["volumes"]]
        for c in spec["containers"]:
            assert "istio-token" not in [m["name"] for m in c.get("volumeMounts") or []]
    assert "fix istio-first-party-jwt" in report


@pytest.mark.slow
def test_pull_secret_on_service_accounts_and_pod_templates() -> None:
    docs, report = fixed("v1.9.1", "pull-secret=regcred")
    accounts = docs.of_kind("ServiceAccount")
    assert len(accounts) > 10
    for d in accounts:
        assert {"name": "regcred"} in d["imagePullSecrets"], d["metadata"]
    spec = docs.find("Deployment", "ml-pipeline")["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert "create Secret regcred" in report


def test_unknown_fix_is_a_usage_error() -> None:
    res = run_kferry("rewrite", str(release_path("v1.4.1")), "--to", TO, "--fix", "nope")
    assert res.code == 2 and "unknown fix" in res.err


def test_mirror_config(tmp_path: Path) -> None:
    res = run_kferry("mirror-config", "gcr.io/a/b:1", "python:3", "--to", TO, "-o", str(tmp_path))
    assert res.code == 0, res.err
    gcr = (tmp_path / "gcr.io" / "hosts.toml").read_text()
    assert 'server = "https://gcr.io"' in gcr
    assert f'[host."https://{HOST}/v2/kubeflow/gcr.io"]' in gcr and "override_path = true" in gcr
    hub = (tmp_path / "docker.io" / "hosts.toml").read_text()
    assert 'server = "https://registry-1.docker.io"' in hub
    res = run_kferry("mirror-config", "gcr.io/a/b:1", "--to", TO, "--format", "crio")
    assert 'prefix = "gcr.io"' in res.out and f'location = "{HOST}/kubeflow/gcr.io"' in res.out
    res = run_kferry("mirror-config", "gcr.io/a/b:1", "--to", TO, "--layout", "flat")
    assert res.code == 2 and "flat" in res.err


def test_safety_net_refuses_output_that_lost_or_broke_objects() -> None:
    from kferry.pipeline import _check_same_objects
    from kferry.rewrite import RewriteError

    src = Source("s.yaml", "kind: A\nmetadata: {name: a}\n---\nkind: B\nmetadata: {name: b}\n")
    before = [(1, "A", "", "a"), (2, "B", "", "b")]
    _check_same_objects(src, before, src.text)  # the same objects: fine
    with pytest.raises(RewriteError, match="changed the set of objects"):
        _check_same_objects(src, before, "kind: A\nmetadata: {name: a}\n")
    with pytest.raises(RewriteError, match="does not parse"):
        _check_same_objects(src, before, "kind: A\nmetadata: {name: [a\n")


@pytest.mark.parametrize(
    "how",
    [
        ["--fix", "pull-secret=regcred"],
        ["--fix", "pull-secret:regcred"],
        ["--fix", "pull-secret regcred"],
        ["--pull-secret", "regcred"],
    ],
)
def test_pull_secret_spellings(how: list[str], tmp_path: Path) -> None:
    f = tmp_path / "sa.yaml"
    f.write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: n}\n")
    res = run_kferry("rewrite", str(f), "--to", TO, *how)
    assert res.code == 0, res.err
    assert docs_of(res.out)[0]["imagePullSecrets"] == [{"name": "regcred"}]
    res = run_kferry("rewrite", str(f), "--to", TO, "--fix", "pull-secret")
    assert res.code == 2 and "--fix pull-secret=NAME" in res.err
