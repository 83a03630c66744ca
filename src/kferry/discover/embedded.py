"""Strings that are documents: JSON or YAML held in ConfigMap values (and inside those).

Each string is parsed at most once per run (``EmbeddedCache``), whoever asks first (a composed
recipe or the generic walker), and parsed with libyaml into position-carrying nodes, the same
as the outer documents: JSON is YAML here, so one walker serves both.
"""

from __future__ import annotations

import yaml

from kferry.load.documents import compose_all

Parsed = tuple[str, list[yaml.Node]]  # (format, document roots)


def _format_of(text: str) -> str | None:
    head = text.lstrip()
    if head.startswith(("{", "[")):
        return "json"
    if "\n" in text.strip() and ":" in text:
        return "yaml"
    return None


class EmbeddedCache:
    """Parse results by scalar node identity: ``None`` when the string is not a document."""

    def __init__(self) -> None:
        self._cache: dict[int, Parsed | None] = {}
        self._keep: list[yaml.Node] = []  # keep nodes alive so ids stay unique

    def parse(self, node: yaml.ScalarNode) -> Parsed | None:
        key = id(node)
        if key in self._cache:
            return self._cache[key]
        result = self._parse(node.value)
        self._cache[key] = result
        self._keep.append(node)
        return result

    @staticmethod
    def _parse(text: str) -> Parsed | None:
        fmt = _format_of(text)
        if fmt is None:
            return None
        try:
            roots = [n for n in compose_all(text) if n is not None]
        except yaml.YAMLError:
            return None
        roots = [n for n in roots if isinstance(n, (yaml.MappingNode, yaml.SequenceNode))]
        if not roots:
            return None
        return fmt, roots
