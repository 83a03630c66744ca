"""Text edits on a source file, and finding the text of a discovered reference.

An edit replaces ``text[start:end]``; insertions have ``start == end``. Edits are collected
from rewriting and from fixes, checked for overlaps (identical edits collapse), and applied
in one pass, so every byte outside them stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from kferry.discover.model import Part
from kferry.rewrite.textmap import LineIndex, node_range, value_range

_REF_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@")


class EditConflict(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Edit:
    start: int
    end: int
    new: str
    why: str  # "rewrite" or the name of a fix


def apply_edits(text: str, edits: list[Edit]) -> str:
    ordered = sorted(set(edits), key=lambda e: (e.start, e.end, e.new))
    out: list[str] = []
    pos = 0
    prev: Edit | None = None
    for e in ordered:
        if prev is not None and e.start < prev.end:
            raise EditConflict(
                f"two changes overlap at offset {e.start}: {prev.why!r} and {e.why!r}"
            )
        if prev is not None and e.start == prev.start == prev.end == e.end:
            pass  # two insertions at one point: both go in, in order
        out.append(text[pos : e.start])
        out.append(e.new)
        pos = e.end
        prev = e
    out.append(text[pos:])
    return "".join(out)


class Locator:
    """Finds where the characters of a :class:`Part` are in its source text."""

    def __init__(self, index: LineIndex) -> None:
        self.index = index
        self._inner: dict[int, LineIndex] = {}

    def _index_of(self, node: yaml.ScalarNode) -> LineIndex:
        key = id(node)
        if key not in self._inner:
            self._inner[key] = LineIndex(node.value)
        return self._inner[key]

    def locate(self, part: Part) -> tuple[int, int] | None:
        node = part.node
        start, end = part.span or (0, len(node.value))
        chain = [scalar for _, scalar in part.embedded]
        while True:
            container = self._index_of(chain[-1]) if chain else self.index
            found = value_range(node, container, start, end)
            if found is None:
                return None
            if not chain:
                return found
            start, end = found
            node = chain.pop()

    def occurrences(self, part: Part, old: str) -> list[tuple[int, int]]:
        """Fallback: whole-word occurrences of ``old`` inside the outermost scalar."""
        outer = part.embedded[0][1] if part.embedded else part.node
        a, b = node_range(outer, self.index)
        text = self.index.text
        out = []
        i = text.find(old, a, b)
        while i != -1:
            j = i + len(old)
            before = text[i - 1] if i > 0 else " "
            after = text[j] if j < len(text) else " "
            if before not in _REF_CHARS and after not in _REF_CHARS:
                out.append((i, j))
            i = text.find(old, j, b)
        return out
