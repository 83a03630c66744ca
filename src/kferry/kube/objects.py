"""Kubernetes objects as plain dicts, built from the loaded YAML nodes.

Timestamps stay strings (the API wants RFC 3339 text, not Python datetimes); everything
else is what PyYAML's safe constructor makes.
"""

from __future__ import annotations

from typing import Any

import yaml

from kferry.load.documents import KubeObject


class _Constructor(yaml.constructor.SafeConstructor):
    pass


def _timestamp_as_text(loader: _Constructor, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_Constructor.add_constructor(  # type: ignore[type-var]  # stubs expect a Loader class
    "tag:yaml.org,2002:timestamp", _timestamp_as_text
)


def as_dict(obj: KubeObject) -> dict[str, Any]:
    data: dict[str, Any] = _Constructor().construct_document(obj.node)
    return data
