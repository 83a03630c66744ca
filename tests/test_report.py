"""`kferry report`: the model and its renderings without servers, sizes and "in registry"
against real loopback registries, and the HTML page opened in a real headless Chromium."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kferry.discover import discover
from kferry.load import Source, load_objects
from kferry.name import parse
from kferry.pipeline import build_report
from kferry.plan import Target
from kferry.report import PlatformSize, Report, Row, Use, rows_of, to_html, to_markdown
from kferry.transfer.credentials import Credential, Keychain
from kferry.transfer.transport import Options
from tests.conftest import run_kferry
from tests.support.images import PushedImage, push_image, push_multiarch
from tests.support.registry import Registry, free_port

EVIL = '<script>alert("x")</script>|`**'


def render(images: dict[str, str], labels: dict[str, dict[str, str]] | None = None) -> str:
    """A render with one Deployment per image (name -> reference) and optional labels."""
    docs = []
    for name, ref in images.items():
        label_lines = "".join(
            f"\n    {k}: {v!r}" for k, v in ((labels or {}).get(name) or {}).items()
        )
        docs.append(
            f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: ns-{name}
  labels:
    app: {name}{label_lines}
spec:
  template:
    spec:
      containers:
      - name: main
        image: {ref}
"""
        )
    return "---\n".join(docs)


def inventory(text: str):
    objects, _ = load_objects([Source("render.yaml", text)])
    return discover(objects)


def sample_report(registry: bool = True) -> Report:
    def use(component: str, optional: str | None = None) -> Use:
        return Use(
            component, f"Deployment/{component}/x", "spec.containers[0].image", "field", optional
        )

    rows = [
        Row(
            "ghcr.io/kubeflow/pipelines/api-server:2.3.0",
            "kubeflow-pipelines",
            [use("kubeflow-pipelines")],
            parse("ghcr.io/kubeflow/pipelines/api-server:2.3.0"),
            digest="sha256:" + "a" * 64,
            size=120_000_000,
            platforms=[PlatformSize("linux/amd64", "sha256:" + "b" * 64, 120_000_000)],
            target="reg.local/kf/ghcr.io/kubeflow/pipelines/api-server:2.3.0",
            presence="present" if registry else None,
        ),
        Row(
            "docker.io/istio/proxyv2:1.22.1",
            "istio-system",
            [use("istio-system"), use("kubeflow", optional="serving")],
            parse("docker.io/istio/proxyv2:1.22.1"),
            digest="sha256:" + "c" * 64,
            size=95_000_000,
            target="reg.local/kf/docker.io/istio/proxyv2:1.22.1",
            presence="missing" if registry else None,
        ),
        Row(
            "quay.io/evil/image:1",
            EVIL,
            [use(EVIL, optional="only with the " + EVIL + " feature")],
            parse("quay.io/evil/image:1"),
            unknown="quay.io not reachable " + EVIL,
            presence="unknown" if registry else None,
            presence_note=EVIL,
        ),
    ]
    return Report(
        rows,
        ["render.yaml"],
        ("linux/amd64",),
        "reg.local/kf" if registry else None,
        warnings=["quay.io: " + EVIL],
    )


# -- model --------------------------------------------------------------------------------------
def test_component_is_the_first_label_set_else_the_namespace() -> None:
    text = render(
        {"api": "ghcr.io/kfp/api:1", "ui": "ghcr.io/kfp/ui:1", "dex": "ghcr.io/dexidp/dex:1"},
        labels={
            "api": {"application-crd-id": "kubeflow-pipelines"},
            "ui": {
                "app.kubernetes.io/part-of": "pipelines-ui",
                "application-crd-id": "kubeflow-pipelines",
            },
        },
    )
    rows = {r.image: r for r in rows_of(inventory(text).images)}
    assert rows["ghcr.io/kfp/api:1"].component == "kubeflow-pipelines"
    assert rows["ghcr.io/kfp/ui:1"].component == "pipelines-ui"  # part-of comes first
    assert rows["ghcr.io/dexidp/dex:1"].component == "ns-dex"
    # the list is data: another label names other components
    custom = {r.image: r for r in rows_of(inventory(text).images, ("app",))}
    assert custom["ghcr.io/dexidp/dex:1"].component == "dex"


def test_groups_and_totals() -> None:
    report = sample_report()
    groups = report.groups
    assert [g.component for g in groups] == ["kubeflow-pipelines", "istio-system", EVIL]
    assert report.total == 215_000_000 and report.unknown == 1 and report.optional == 1
    assert report.count("present") == 1 and report.count("missing") == 1
    assert report.rows[1].also == ["kubeflow"] and not report.rows[1].optional


def test_html_is_self_contained_and_escapes_everything() -> None:
    page = to_html(sample_report())
    assert "<script" not in page  # the label, reason and note came from untrusted objects
    assert html.escape(EVIL) in page
    assert not re.search(r"""(src|href)\s*=|url\(|@import|<link""", page)  # no external asset
    assert "<svg" in page and page.count("<rect") == 3  # one bar per component
    assert "215.0 MB" in page and "not in registry" in page and "registry state unknown" in page
    assert "reg.local/kf/docker.io/istio/proxyv2:1.22.1" in page


def test_markdown_is_one_table_row_per_image_with_cells_escaped() -> None:
    text = to_markdown(sample_report())
    assert "<script" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "image:1" in line]
    assert len(rows) == 1
    cells = re.split(r"(?<!\\)\|", rows[0])[1:-1]
    assert len(cells) == 6  # the | in the untrusted text did not add a column
    assert "215.0 MB" in text and "1 already in the registry, 1 not" in text


def test_without_registry_there_is_no_registry_column() -> None:
    page = to_html(sample_report(registry=False))
    assert "private registry" not in page and "in registry" not in page


# -- CLI without servers -----------------------------------------------------------------------
def test_nothing_listening_is_one_warning_and_a_page_with_unknown_sizes(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "render.yaml").write_text(
        render({f"app{i}": f"{host}/team/app{i}:1" for i in range(5)})
    )
    out = tmp_path / "report.md"
    res = run_kferry("report", str(tmp_path / "render.yaml"), "--plain-http", host, "-o", str(out))
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and host in warnings[0] and "Connect" in warnings[0]
    text = out.read_text()
    assert text.startswith("# Images to transfer")
    assert text.count(f"unknown: {host} not reachable (see warnings)") == 5


def test_output_shapes(tmp_path: Path) -> None:
    (tmp_path / "render.yaml").write_text(render({"a": "ghcr.io/x/a:1"}))
    src = str(tmp_path / "render.yaml")
    md = run_kferry("report", src, "--offline", "-o", "md")
    assert md.code == 0 and md.out.startswith("# Images to transfer"), md.err
    page = run_kferry("report", src, "--offline", "-o", str(tmp_path / "r.txt"), "--format", "html")
    assert page.code == 0 and (tmp_path / "r.txt").read_text().startswith("<!DOCTYPE html>")
    bad = run_kferry("report", src, "--offline", "--registry", "reg.local", "-o", "md")
    assert bad.code == 2 and "REGISTRY[:PORT]/PROJECT" in bad.err
    help_text = run_kferry("report", "--help").out
    assert "Examples:" in help_text and "--registry" in help_text


# -- real registries ----------------------------------------------------------------------------
def _image_size(img: PushedImage) -> int:
    assert img.config is not None
    return img.size + img.config.size + sum(layer.size for layer in img.layers)


@pytest.mark.registry
def test_sizes_digests_and_presence_from_real_registries(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    single = push_image(source_registry, "team/single", tag="1", layers=[40_000, 10_000])
    multi = push_multiarch(
        source_registry,
        "team/multi",
        tag="2",
        layers=[30_000],
        platforms=("linux/amd64", "linux/arm64/v8"),
    )
    # only `single` is in the private registry already, copied by kferry mirror
    mirrored = run_kferry(
        "mirror", single.tag_ref, "--plain-http", source_registry.host,
        "--to", f"{target_registry.host}/proj", "--ca-file", str(target_registry.ca_file),
        "--username", str(target_registry.username), "--password-stdin",
        "--lock", str(tmp_path / "lock.json"),
        stdin=f"{target_registry.password}\n".encode(),
    )  # fmt: skip
    assert mirrored.code == 0, mirrored.err
    inv = inventory(render({"single": single.tag_ref, "multi": multi.tag_ref}))
    assert target_registry.username and target_registry.password
    options = Options(
        keychain=Keychain(
            {target_registry.host: Credential(target_registry.username, target_registry.password)}
        ),
        ca_file=target_registry.ca_file,
        plain_http=frozenset({source_registry.host}),
        retries=0,
    )
    to = Target.parse(f"{target_registry.host}/proj")
    report = build_report(inv, ["render.yaml"], options, ("linux/arm64",), to)
    assert report.warnings == []
    rows = {r.reference.repository: r for r in report.rows}
    one = rows[f"{source_registry.host}/team/single"]
    assert one.digest == single.digest and one.size == _image_size(single)
    assert one.presence == "present"
    assert (
        one.target
        == f"{target_registry.host}/proj/{source_registry.host.replace(':', '-')}/team/single:1"
    )
    arm = next(c for c in multi.children if c.platform and c.platform["architecture"] == "arm64")
    two = rows[f"{source_registry.host}/team/multi"]
    assert two.digest == multi.digest and two.presence == "missing"
    assert [p.platform for p in two.platforms] == ["linux/arm64/v8"]  # prefix match
    assert two.size == multi.size + _image_size(arm)
    # all platforms: the index, each child manifest, each distinct blob once
    every = build_report(inv, ["render.yaml"], options)
    allp = next(r for r in every.rows if r.reference.path == "team/multi")
    blobs = {b.digest: b.size for c in multi.children for b in (c.config, *c.layers) if b}
    assert allp.size == multi.size + sum(c.size for c in multi.children) + sum(blobs.values())
    assert len(allp.platforms) == 2

    # the command, with the target's password on stdin: a filtered copy of `multi` is there now
    res = run_kferry(
        "mirror", multi.tag_ref, "--platform", "linux/amd64", "--plain-http", source_registry.host,
        "--to", f"{target_registry.host}/proj", "--ca-file", str(target_registry.ca_file),
        "--username", target_registry.username, "--password-stdin",
        "--lock", str(tmp_path / "lock.json"),
        stdin=f"{target_registry.password}\n".encode(),
    )  # fmt: skip
    assert res.code == 0, res.err
    (tmp_path / "render.yaml").write_text(
        render({"single": single.tag_ref, "multi": multi.tag_ref})
    )
    res = run_kferry(
        "report", str(tmp_path / "render.yaml"), "--plain-http", source_registry.host,
        "--registry", f"{target_registry.host}/proj", "--ca-file", str(target_registry.ca_file),
        "--username", target_registry.username, "--password-stdin", "-o", "md",
        stdin=f"{target_registry.password}\n".encode(),
    )  # fmt: skip
    assert res.code == 0 and "warning" not in res.err, res.err
    assert target_registry.password not in res.out + res.err
    assert "1 already in the registry, 0 not, 1 with another digest" in res.out


# -- a real browser -----------------------------------------------------------------------------
def _chromium() -> str:
    found = shutil.which("chromium")
    assert found, "chromium is not installed: run scripts/system-deps"
    return found


@pytest.mark.slow
def test_page_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(to_html(sample_report()))
    base = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    dom = subprocess.run(
        [*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    assert "Images to transfer" in text
    assert "ghcr.io/kubeflow/pipelines/api-server:2.3.0" in text
    assert "215.0 MB" in text and "not in registry" in text
    # the untrusted text is shown as text: the browser built no script element from it
    assert "<script" not in dom.stdout and "&lt;script&gt;" in dom.stdout
    shot = tmp_path / "report.png"
    res = subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")
