"""`kferry airgap`: discover, copy (or bundle), rewrite and fix in one command."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import run_kferry
from tests.support.images import PushedImage, assert_copied, push_image, push_multiarch
from tests.support.registry import Registry
from tests.support.skopeo import skopeo_raw_digest

pytestmark = pytest.mark.registry


def manifests(path: Path, controller: PushedImage, agent: PushedImage) -> Path:
    path.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ctl, namespace: kubeflow}\n"
        "spec:\n  template:\n    spec:\n      containers:\n"
        f"      - name: ctl\n        image: {controller.tag_ref}\n"
        f"        env:\n        - name: AGENT_IMAGE\n          value: {agent.ref}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-deployment, "
        "namespace: knative-serving}\ndata:\n  queue-sidecar-image: "
        f"{agent.ref}\n"
    )
    return path


def target_repo(src: Registry, img: PushedImage) -> str:
    return f"kf/{src.host.replace(':', '-')}/{img.repo}"


def login(target: Registry) -> tuple[list[str], bytes]:
    return target.login_args(), target.password_stdin()


def check(out: Path, src: Registry, target: Registry, images: list[PushedImage]) -> None:
    text = out.read_text()
    for img in images:
        assert img.host not in text.replace(target.host, "")
        repo = target_repo(src, img)
        assert_copied(img, target, repo, tag=img.tag)
        ref = f"{target.host}/{repo}" + (f":{img.tag}" if img.tag else f"@{img.digest}")
        assert ref in text
        assert skopeo_raw_digest(ref, registry=target) == img.digest
    lock = json.loads((out.parent / "kferry.lock.json").read_text())
    assert {e["digest"] for e in lock["images"]} == {i.digest for i in images}


def test_registry_to_registry(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    ctl = push_image(source_registry, "kf/controller", tag="v1", layers=[20_000])
    agent = push_multiarch(source_registry, "kf/agent")  # by digest only
    src = manifests(tmp_path / "render.yaml", ctl, agent)
    out = tmp_path / "out" / "render.yaml"
    args, stdin = login(target_registry)
    res = run_kferry(
        "airgap",
        str(src),
        "--to",
        f"{target_registry.host}/kf",
        "--plain-http",
        source_registry.host,
        *args,
        "-o",
        str(out),
        "--json",
        stdin=stdin,
    )
    assert res.code == 0, res.out + res.err
    summary = json.loads(res.out)
    assert summary["copied"] == 2 and summary["failures"] == []
    check(out, source_registry, target_registry, [ctl, agent])
    cm = out.read_text().split("kind: ConfigMap")[1]
    assert (
        f'registries-skipping-tag-resolving: "kind.local,ko.local,dev.local,'
        f'{target_registry.host}"' in cm
    )


def test_bundle_then_load(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    ctl = push_image(source_registry, "kf/controller", tag="v2", layers=[30_000])
    agent = push_image(source_registry, "kf/agent", tag=None, layers=[10_000])
    src = manifests(tmp_path / "render.yaml", ctl, agent)
    connected = tmp_path / "connected"
    bundle = tmp_path / "kubeflow.tar.zst"
    res = run_kferry(
        "airgap",
        str(src),
        "--to",
        f"{target_registry.host}/kf",
        "--plain-http",
        source_registry.host,
        "--bundle",
        str(bundle),
        "-o",
        str(connected / "render.yaml"),
    )
    assert res.code == 0, res.out + res.err
    assert bundle.exists() and (connected / "kferry.lock.json").exists()
    assert run_kferry("bundle", "verify", str(bundle)).code == 0
    # progress in a pipe and the summary of a save (tests/test_progress.py has the rest)
    sha = hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert f"bundle: {bundle} (" in res.out and f"sha256 {sha}" in res.out, res.out
    assert "2 images: 2 saved" in res.out and " written in " in res.out, res.out
    assert f"packing {bundle}: done in " in res.err, res.err

    private = tmp_path / "private"
    args, stdin = login(target_registry)
    res = run_kferry(
        "airgap",
        str(src),
        "--to",
        f"{target_registry.host}/kf",
        "--load",
        str(bundle),
        *args,
        "-o",
        str(private / "render.yaml"),
        stdin=stdin,
    )
    assert res.code == 0, res.out + res.err
    assert "2 images: 2 loaded" in res.out and " loaded in " in res.out, res.out
    assert f"reading bundle {bundle}: done in " in res.err, res.err
    assert (
        sum(line.startswith(("[1/2] loaded ", "[2/2] loaded ")) for line in res.err.splitlines())
        == 2
    )
    check(private / "render.yaml", source_registry, target_registry, [ctl, agent])


def test_failed_copy_writes_no_manifests(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    ctl = push_image(source_registry, "kf/controller", tag="v1")
    agent = push_image(source_registry, "kf/agent", tag="v1")
    src = manifests(tmp_path / "render.yaml", ctl, agent)
    out = tmp_path / "out.yaml"
    res = run_kferry(
        "airgap",
        str(src),
        "--to",
        f"{target_registry.host}/kf",
        "--plain-http",
        source_registry.host,
        "-o",
        str(out),
    )  # no CA, no credentials
    assert res.code == 1
    assert not out.exists()
    assert "--ca-file" in res.err  # the preflight's one line (tests/test_preflight.py)
