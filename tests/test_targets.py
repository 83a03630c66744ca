"""Targets the user did not mean are refused (exit 2, one line), before anything is done:

- ``--to REGISTRY`` without a project (the source host would silently become the project)
  unless ``--no-project`` says the registry has none;
- ``rewrite --lock`` with a lock that records none of the render's images, or records them
  somewhere other than ``--to``/``--layout`` plans (another project, another layout).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Result, run_kferry

A = "docker.io/library/busybox:1.36"
B = "quay.io/example/app:v1"
DIGEST = "sha256:" + "a" * 64
RENDER = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: kf}\n"
    "spec:\n  template:\n    spec:\n      containers:\n"
    f"      - {{name: a, image: '{A}'}}\n      - {{name: b, image: '{B}'}}\n"
)


def input_error(res: Result) -> str:
    assert res.code == 2, res
    lines = res.err.splitlines()
    assert len(lines) == 1, res.err
    assert "Traceback" not in res.err
    return lines[0].removeprefix("kferry: error: ")


@pytest.fixture
def render(tmp_path: Path) -> Path:
    path = tmp_path / "render.yaml"
    path.write_text(RENDER)
    return path


def write_lock(path: Path, *pairs: tuple[str, str]) -> Path:
    images = [{"source": s, "target": t, "digest": DIGEST} for s, t in pairs]
    path.write_text(json.dumps({"version": 1, "images": images}))
    return path


# -- --to without a project ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ["plan", A],
        # nothing listens on port 9: refused before any registry is asked
        ["mirror", A, "--lock", "{tmp}/lock.json"],
        ["bundle", "load", "{tmp}/no-bundle"],
        ["rewrite", "{render}"],
        ["mirror-config", A],
        ["airgap", "{render}", "-o", "{tmp}/out.yaml"],
    ],
    ids=lambda c: c[0] if c[0] != "bundle" else "bundle-load",
)
def test_to_without_project_is_refused(tmp_path: Path, render: Path, command: list[str]) -> None:
    args = [a.format(tmp=tmp_path, render=render) for a in command]
    line = input_error(run_kferry(*args, "--to", "127.0.0.1:9"))
    assert line == (
        "--to 127.0.0.1:9: no project (expected REGISTRY[:PORT]/PROJECT); without one each "
        "image's source host would be taken for the project: name the project, or pass "
        "--no-project if this registry has no projects"
    ), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["render.yaml"]


def test_the_message_names_what_each_layout_would_take() -> None:
    line = input_error(run_kferry("plan", A, "--to", "reg.local", "--layout", "drop-host"))
    assert "each image's first path component would be taken for the project" in line


def test_no_project_says_the_registry_has_none() -> None:
    res = run_kferry("plan", A, B, "--to", "reg.local:5000", "--no-project")
    assert res.code == 0, res
    assert res.out.split("\n")[:2] == [
        f"{A} -> reg.local:5000/docker.io/library/busybox:1.36",
        f"{B} -> reg.local:5000/quay.io/example/app:v1",
    ]
    line = input_error(run_kferry("plan", A, "--to", "reg.local/kf", "--no-project"))
    assert line == "--to reg.local/kf names project 'kf'; drop --no-project"


# -- rewrite --lock -----------------------------------------------------------------------------
def rewrite(render: Path, lock: Path, out: Path, *extra: str) -> Result:
    return run_kferry(
        "rewrite", str(render), "--to", "reg.local/kf", "--lock", str(lock), "-o", str(out),
        *extra,
    )  # fmt: skip


def test_lock_of_other_images_is_refused(tmp_path: Path, render: Path) -> None:
    lock = write_lock(
        tmp_path / "other.lock.json",
        ("docker.io/library/nginx:1", "reg.local/kf/docker.io/library/nginx:1"),
    )
    out = tmp_path / "out.yaml"
    line = input_error(rewrite(render, lock, out))
    assert line.startswith(
        f"--lock {lock}: records none of the 2 images of this render (1 entries, e.g. "
        "docker.io/library/nginx:1): it is the lock of another copy"
    ), line
    assert not out.exists()


@pytest.mark.parametrize(
    ("where", "extra"),
    [
        ("reg.local/other/docker.io/library/busybox:1.36", []),  # another project
        ("elsewhere.local/kf/docker.io/library/busybox:1.36", []),  # another registry
        ("reg.local/kf/docker.io/library/busybox:1.36", ["--layout", "flat"]),  # layout
    ],
    ids=["project", "registry", "layout"],
)
def test_lock_disagreeing_with_to_is_refused(
    tmp_path: Path, render: Path, where: str, extra: list[str]
) -> None:
    lock = write_lock(tmp_path / "l.json", (A, where))
    out = tmp_path / "out.yaml"
    line = input_error(rewrite(render, lock, out, *extra))
    layout = extra[1] if extra else "keep"
    planned = (
        "reg.local/kf/docker.io__library__busybox"
        if extra
        else "reg.local/kf/docker.io/library/busybox"
    )
    assert line == (
        f"--lock {lock}: 1 of the 1 images it records for this render are not where --to "
        f"reg.local/kf --layout {layout} puts them, e.g. {A} is at {where.rsplit(':', 1)[0]}, "
        f"not {planned}: pass the --to and --layout of that copy, or the lock of a copy to "
        "this --to"
    ), line
    assert not out.exists()


def test_lock_of_this_copy_is_used(tmp_path: Path, render: Path) -> None:
    """The lock records one of the two images where --to puts it: accepted; with
    --pin-digests the image it lacks is still named."""
    lock = write_lock(tmp_path / "l.json", (A, "reg.local/kf/docker.io/library/busybox:1.36"))
    out = tmp_path / "out.yaml"
    res = rewrite(render, lock, out)
    assert res.code == 0, res
    assert "image: 'reg.local/kf/docker.io/library/busybox:1.36'" in out.read_text()
    line = input_error(rewrite(render, lock, out, "--pin-digests"))
    assert line.startswith(f"--pin-digests: {B} is not in the lock file"), line


def test_missing_lock_file_is_refused(tmp_path: Path, render: Path) -> None:
    lock = tmp_path / "absent.json"
    line = input_error(rewrite(render, lock, tmp_path / "out.yaml"))
    assert line == f"--lock {lock}: no such file"
