"""YAML alias bombs and recursive aliases (issue 10, item 3): bounded, exit 2, file and line.

Each command runs with a timeout far below what an unbounded expansion takes (hours), so a
regression fails here instead of hanging.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_kferry

TIMEOUT = 60


def laughs(levels: int = 9, width: int = 9, indent: str = "") -> str:
    """Nested anchors: ``width ** levels`` nodes once expanded, a few hundred bytes."""
    lines = [f'{indent}l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*l{i - 1}"] * width)
        lines.append(f"{indent}l{i}: &l{i} [{refs}]")
    return "\n".join(lines) + "\n"


POD_BOMB = (
    """apiVersion: v1
kind: Pod
metadata: {name: bomb, namespace: ns}
spec:
  containers:
  - name: c
    image: docker.io/library/busybox:1.36
    env:
    - name: X
      value: x
  bomb:
"""
    + laughs(indent="    ")
    + """  more: *l9
"""
)

# The same bomb as the text of a ConfigMap value that kferry parses as an embedded document.
EMBEDDED_BOMB = (
    """apiVersion: v1
kind: ConfigMap
metadata: {name: inferenceservice-config, namespace: kserve}
data:
  predictors: |
    image: docker.io/kserve/sklearnserver:v0.13.1
"""
    + laughs(indent="    ")
    + """    all: *l9
"""
)

RECURSIVE = """apiVersion: apps/v1
kind: Deployment
metadata: {name: loop}
spec:
  template:
    spec:
      containers: &c
      - name: c
        image: docker.io/library/busybox:1.36
        sidecars: *c
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert len(text) < 1500
    return path


COMMANDS = [
    ["images"],
    ["rewrite", "--to", "registry.example:5000/proj"],
    ["mirror", "--to", "127.0.0.1:9/proj", "--from"],
    ["airgap", "--to", "127.0.0.1:9/proj", "-o"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("text", "line"), [(POD_BOMB, 19), (EMBEDDED_BOMB, 5)], ids=["pod", "embedded"]
)
def test_alias_bomb_is_refused_quickly(
    tmp_path: Path, command: list[str], text: str, line: int
) -> None:
    path = write(tmp_path, text)
    args = [*command, str(path)]
    if command[0] == "airgap":
        args = ["airgap", str(path), "--to", "127.0.0.1:9/proj", "-o", str(tmp_path / "out.yaml")]
    res = run_kferry(*args, timeout=TIMEOUT)
    assert res.code == 2, res.out + res.err
    assert str(path) in res.err and "alias" in res.err
    assert f"line {line}" in res.err, res.err
    assert "Traceback" not in res.err
    assert not (tmp_path / "out.yaml").exists()


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, RECURSIVE)
    res = run_kferry("images", str(path), timeout=TIMEOUT)
    assert res.code == 2, res.out + res.err
    assert str(path) in res.err and "refers to itself" in res.err
    assert "Traceback" not in res.err


def test_small_aliases_still_work(tmp_path: Path) -> None:
    text = """apiVersion: apps/v1
kind: Deployment
metadata: {name: ok}
spec:
  template:
    spec:
      containers:
      - &main
        name: main
        image: docker.io/library/busybox:1.36
      initContainers:
      - *main
"""
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    res = run_kferry("images", str(path), "-o", "json", timeout=TIMEOUT)
    assert res.code == 0, res.err
    assert "docker.io/library/busybox:1.36" in res.out


def test_expanded_size_is_linear_and_bounded() -> None:
    from kferry.load.documents import MAX_EXPANDED_NODES, expanded_size

    node = yaml.compose(laughs(levels=12, width=10))
    assert node is not None
    with pytest.raises(Exception, match="alias bomb"):
        expanded_size(node)
    small = yaml.compose(laughs(levels=3, width=3))
    assert small is not None
    total, distinct = expanded_size(small)
    assert total > distinct and total < MAX_EXPANDED_NODES
