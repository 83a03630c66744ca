"""Strings that are documents: JSON or YAML held in ConfigMap values (and inside those).

Each string is parsed at most once per run (``EmbeddedCache``), whoever asks first (a composed
recipe or the generic walker), and parsed with libyaml into position-carrying nodes, the same
as the outer documents: JSON is YAML here, so one walker serves both.
"""

from __future__ import annotations

import yaml

from kferry.errors import InputError
from kferry.load.documents import AliasBomb, check_aliases, compose_all, may_have_aliases

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
        self.errors: dict[int, str] = {}  # why a string that looks like JSON did not parse

    def parse(self, node: yaml.ScalarNode, file: str) -> Parsed | None:
        """``file`` names the input in the error for a string whose aliases explode."""
        key = id(node)
        if key in self._cache:
            return self._cache[key]
        try:
            result = self._parse(node.value, key, self.errors)
        except AliasBomb as exc:
            raise InputError(
                f"{file}: line {node.start_mark.line + 1}: the document in this string, its "
                f"line {exc.line + 1}: {exc.problem}; refused"
            ) from None
        self._cache[key] = result
        self._keep.append(node)
        return result

    def take_error(self, node: yaml.ScalarNode) -> str | None:
        """Why ``node`` (parsed before) looked like a JSON document but could not be read;
        given once, so that one bad value makes one warning whoever reads it."""
        return self.errors.pop(id(node), None)

    @staticmethod
    def _parse(text: str, key: int, errors: dict[int, str]) -> Parsed | None:
        fmt = _format_of(text)
        if fmt is None:
            return None
        try:
            roots = [n for n in compose_all(text) if n is not None]
        except yaml.YAMLError as exc:
            if fmt == "json" and not text.lstrip().startswith("{{"):  # not a Go template
                mark = getattr(exc, "problem_mark", None)
                line = f"line {mark.line + 1}: " if mark is not None else ""
                problem = getattr(exc, "problem", None) or "malformed"
                errors[key] = f"{line}{problem}"
            return None
        except RecursionError:
            return None
        roots = [n for n in roots if isinstance(n, (yaml.MappingNode, yaml.SequenceNode))]
        if not roots:
            return None
        if may_have_aliases(text):
            check_aliases(roots)
        return fmt, roots
