"""Shared test helpers: run kferry as a user does, find the shipped corpus."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import forkrun

pytest_plugins = [
    "tests.support.markers",
    "tests.support.fixtures",
    "tests.support.cluster_fixtures",
]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "kubeflow"
DATA = ROOT / "tests" / "data"
RELEASES = ["v1.4.1", "v1.9.1", "26.03"]


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_kferry(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> Result:
    """Run ``python -m kferry`` as a user's shell would: its own process, stdin, environment
    and exit code. Forked from a preloaded server (tests/support/forkrun.py) unless
    ``KFERRY_TEST_SUBPROCESS=1``, then a new interpreter each time."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    if os.environ.get("KFERRY_TEST_SUBPROCESS") != "1":
        code, out, err = forkrun.run(
            list(args), stdin or b"", full_env, str(cwd or Path.cwd()), timeout
        )
        return Result(code, out.decode(), err.decode())
    proc = subprocess.run(
        [sys.executable, "-m", "kferry", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture
def kferry():
    return run_kferry


def release_path(release: str) -> Path:
    return EXAMPLES / f"kubeflow-{release}.yaml.gz"
