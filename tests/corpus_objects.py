"""Objects taken from the shipped Kubeflow renders, for cluster tests."""

from __future__ import annotations

import gzip
from functools import cache
from typing import Any

import yaml

from tests.conftest import release_path


@cache
def render_docs(release: str) -> tuple[dict[str, Any], ...]:
    text = gzip.decompress(release_path(release).read_bytes()).decode()
    return tuple(d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d)


def find_object(release: str, kind: str, name: str) -> dict[str, Any]:
    for d in render_docs(release):
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    raise KeyError(f"{release}: no {kind} {name}")
