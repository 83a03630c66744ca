"""Pod specs inside any Kubernetes object, in both object models kferry works with.

kferry holds objects two ways: YAML nodes (renders, edited in place by fix and rewrite) and
plain dicts (API objects fetched by doctor). Both ask the same question: where are the pod
specs of this object? One rule answers it for every kind: a pod spec is a mapping with a
``containers`` list, anywhere in the object outside ``metadata`` and ``status``. That finds
``spec`` of a Pod, ``spec.template.spec`` of the workloads, ``spec.jobTemplate.spec.template.spec``
of a CronJob, and the pod templates custom resources embed (Notebook, InferenceService
predictors, Knative Service) without a table of kinds to keep up to date. The rule is written
once (:func:`_walk`), with one small adapter per model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import yaml

N = TypeVar("N")

SKIPPED = frozenset({"metadata", "status"})


def _walk(
    root: N,
    entries: Callable[[N], Iterable[tuple[str, N]] | None],
    items: Callable[[N], Iterable[N] | None],
    is_list: Callable[[N], bool],
) -> list[N]:
    """The pod specs below ``root``; ``entries`` gives a mapping's (key, value) pairs (``None``
    for a non-mapping), ``items`` a sequence's items (``None`` for a non-sequence)."""
    out: list[N] = []
    stack = [root]
    while stack:
        cur = stack.pop()
        pairs = entries(cur)
        if pairs is not None:
            pairs = list(pairs)
            if any(k == "containers" and is_list(v) for k, v in pairs):
                out.append(cur)
            stack.extend(v for k, v in pairs if k not in SKIPPED)
            continue
        children = items(cur)
        if children is not None:
            stack.extend(children)
    return out


def _node_entries(node: yaml.Node) -> Iterable[tuple[str, yaml.Node]] | None:
    if isinstance(node, yaml.MappingNode):
        return ((str(k.value), v) for k, v in node.value)
    return None


def _node_items(node: yaml.Node) -> Iterable[yaml.Node] | None:
    return node.value if isinstance(node, yaml.SequenceNode) else None


def pod_spec_nodes(node: yaml.Node) -> list[yaml.MappingNode]:
    """Every pod spec below a YAML node (mapping nodes, as edited in place by the fixes)."""
    found = _walk(node, _node_entries, _node_items, lambda n: isinstance(n, yaml.SequenceNode))
    return [n for n in found if isinstance(n, yaml.MappingNode)]


def _dict_entries(value: Any) -> Iterable[tuple[str, Any]] | None:
    if isinstance(value, Mapping):
        return ((str(k), v) for k, v in value.items())
    return None


def _dict_items(value: Any) -> Iterable[Any] | None:
    return value if isinstance(value, list) else None


def pod_spec_dicts(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every pod spec of an API object (plain dicts, as fetched from the cluster)."""
    found = _walk(obj, _dict_entries, _dict_items, lambda v: isinstance(v, list))
    return [v for v in found if isinstance(v, Mapping)]
