"""The package layout is the pipeline: every import of ``src/kferry`` points down the stages.

Read from the source (``ast``), not from ``sys.modules``: imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "kferry"

# Lowest first. Shared pieces, then the pipeline's stages in order, then the cluster layer
# and day 2, then what composes them. ``doctor`` comes before ``apply``: apply's rollout wait
# explains image pull failures with doctor's rules (kferry.doctor.pulls).
LAYERS = [
    "errors",
    "name",
    "duration",
    "objref",
    "logs",
    "podspec",
    "scratch",
    "atomic",
    "interrupt",
    "load",
    "catalog",
    "discover",
    "plan",
    "transfer",
    "rewrite",
    "fix",
    "kube",
    "users",
    "doctor",
    "status",
    "apply",
    "wheels",
    "notebook",
    "report",
    "pipeline",
    "cli",
    "__main__",
]


def _unit(module: str) -> str:
    """``kferry.transfer.layout.read`` -> ``transfer``; ``kferry`` itself -> ``kferry``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kferry"


def _edges() -> set[tuple[str, str, str]]:
    """(importing unit, imported unit, file) for every import of another unit."""
    out: set[tuple[str, str, str]] = set()
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        unit = _unit(module)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "kferry":
                    # a submodule (from kferry import scratch), else the package's own names
                    targets = [
                        f"kferry.{a.name}" if a.name in LAYERS else "kferry" for a in node.names
                    ]
                elif node.module.startswith("kferry."):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("kferry.")]
            for target in targets:
                if _unit(target) != unit:
                    out.add((unit, _unit(target), str(rel)))
    return out


def test_every_unit_has_a_layer() -> None:
    units = {
        p.stem if p.is_file() else p.name
        for p in SRC.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert units == set(LAYERS)


def test_imports_point_down_the_layers() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    up = sorted(
        f"{where}: {a} imports {b}"
        for a, b, where in _edges()
        if b != "kferry" and rank[b] >= rank[a]
    )
    assert up == []
