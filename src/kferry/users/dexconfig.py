"""Edits of Dex's ``config.yaml`` in its own text, at exact source positions.

``kferry users`` owns one thing in that file: entries of ``staticPasswords``. Everything else
(comments, connectors, static clients, keys this version of kferry does not know, quoting and
indentation) must stay byte for byte, so the file is not parsed and written back: libyaml's node
positions (:mod:`kferry.rewrite.textmap`) say where an entry's lines are, and
:func:`kferry.rewrite.edits.apply_edits` changes only those lines, the way ``kferry rewrite``
edits manifests.

* add: one block entry after the last one, with the existing entries' indentation (a flow
  sequence ``[...]`` gets a flow mapping; no ``staticPasswords`` at all gets the key at the end);
* update: a value replaced where it is written, a key added on its own line after the entry's
  last line, a key removed with its line;
* remove: the entry's lines, from its dash to the end of its last value (comments after it
  stay).

Every result is parsed again and must equal the intended configuration; a layout these edits do
not cover (aliases, an entry on its key's line, a removal from a flow sequence) gives ``None``,
and the caller says so rather than guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import yaml

from kferry.rewrite.edits import Edit, apply_edits
from kferry.rewrite.insert import quoted
from kferry.rewrite.textmap import LineIndex, node_range

KEY = "staticPasswords"
_PLAIN = re.compile(r"[A-Za-z0-9_$][A-Za-z0-9_$@.+/=-]*")
_WHY = "dex static password"

Fields = Sequence[tuple[str, str]]


def scalar(value: str) -> str:
    """``value`` as YAML text: plain when it reads back as the same string, else quoted."""
    if _PLAIN.fullmatch(value):
        try:
            if yaml.safe_load(f"k: {value}") == {"k": value}:
                return value
        except yaml.YAMLError:
            pass
    return quoted(value)


def _like(node: yaml.ScalarNode, value: str) -> str:
    """``value`` written in the quoting style of the scalar it replaces."""
    if node.style == '"':
        return quoted(value)
    if node.style == "'" and "'" not in value and "\n" not in value:
        return f"'{value}'"
    return scalar(value)


def _content_end(node: yaml.Node, index: LineIndex) -> int:
    """Where the last character of ``node``'s content is (a block collection's end mark
    is the next token's position, after any comments that follow it)."""
    if isinstance(node, yaml.MappingNode) and node.value and not node.flow_style:
        return _content_end(node.value[-1][1], index)
    if isinstance(node, yaml.SequenceNode) and node.value and not node.flow_style:
        return _content_end(node.value[-1], index)
    return node_range(node, index)[1]


def _line_after(index: LineIndex, node: yaml.Node) -> int:
    """Offset where a new line can start just after ``node``'s last line."""
    end = _content_end(node, index)
    line = index.text.count("\n", 0, end)
    if not index.text[index.starts[line] : end].strip():
        return index.starts[line]  # a literal block ends at the start of the next line
    return index.line_end(line)


def _own_line(index: LineIndex, node: yaml.Node, prefix: str = "") -> bool:
    """Whether only indentation (and ``prefix``, e.g. ``-``) precedes ``node`` on its line."""
    line_start = index.starts[node.start_mark.line]
    at = index.offset(node.start_mark.line, node.start_mark.column)
    before = index.text[line_start:at].strip()
    return before in ("", prefix)


def _lead(index: LineIndex, at: int) -> str:
    return "" if at == 0 or index.text[at - 1] == "\n" else "\n"


class DexConfigText:
    """One ``config.yaml`` text and the nodes of its ``staticPasswords`` entries."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.index = LineIndex(text)
        root = yaml.compose(text, Loader=yaml.CSafeLoader)
        self.root = root if isinstance(root, yaml.MappingNode) else None
        self.key: yaml.ScalarNode | None = None
        self.seq: yaml.Node | None = None
        for k, v in self.root.value if self.root is not None else []:
            if isinstance(k, yaml.ScalarNode) and k.value == KEY:
                self.key, self.seq = k, v

    @property
    def entries(self) -> list[yaml.MappingNode]:
        """The mapping items of ``staticPasswords``, in order (what Dex reads as entries)."""
        if not isinstance(self.seq, yaml.SequenceNode):
            return []
        return [n for n in self.seq.value if isinstance(n, yaml.MappingNode)]

    def _edited(self, edits: list[Edit]) -> str:
        return apply_edits(self.text, edits)

    # -- add

    def add(self, fields: Fields) -> str | None:
        if self.root is None or self.root.flow_style or not fields:
            return None
        seq = self.seq
        if isinstance(seq, yaml.SequenceNode) and seq.flow_style:
            return self._add_flow(seq, fields)
        if isinstance(seq, yaml.SequenceNode) and seq.value:
            return self._add_block(seq, fields)
        if self.key is not None and (
            seq is None or (isinstance(seq, yaml.ScalarNode) and seq.tag.endswith(":null"))
        ):
            # "staticPasswords:" with nothing after it: the entry goes on the next line
            if seq is not None and seq.value:
                return None  # an explicit "null" or "~" stays Dex's business
            at = self.index.line_end(self.key.start_mark.line)
            col = self.key.start_mark.column
            return self._edited([Edit(at, at, _lead(self.index, at) + _block(fields, col), _WHY)])
        if self.key is None:
            col = self.root.value[0][0].start_mark.column if self.root.value else 0
            at = _line_after(self.index, self.root)
            block = f"{' ' * col}{KEY}:\n{_block(fields, col)}"
            return self._edited([Edit(at, at, _lead(self.index, at) + block, _WHY)])
        return None

    def _add_flow(self, seq: yaml.SequenceNode, fields: Fields) -> str | None:
        a, b = node_range(seq, self.index)
        close = self.text.rfind("]", a, b)
        if close == -1:
            return None
        sep = ", " if seq.value else ""
        item = "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in fields) + "}"
        return self._edited([Edit(close, close, sep + item, _WHY)])

    def _add_block(self, seq: yaml.SequenceNode, fields: Fields) -> str | None:
        last = seq.value[-1]
        first = seq.value[0]
        dash = self._dash_column(first)
        if dash is None:
            return None
        key_col = dash + 2
        if isinstance(first, yaml.MappingNode) and first.value and not first.flow_style:
            key_col = first.value[0][0].start_mark.column
        at = _line_after(self.index, last)
        text = _lead(self.index, at) + _block(fields, dash, key_col - dash)
        return self._edited([Edit(at, at, text, _WHY)])

    def _dash_column(self, item: yaml.Node) -> int | None:
        line_start = self.index.starts[item.start_mark.line]
        at = self.index.offset(item.start_mark.line, item.start_mark.column)
        before = self.index.text[line_start:at]
        if before.strip() != "-":
            return None
        return before.index("-")

    # -- update

    def update(
        self, entry: int, set_fields: Fields = (), remove_keys: Sequence[str] = ()
    ) -> str | None:
        nodes = self.entries
        if not 0 <= entry < len(nodes):
            return None
        node = nodes[entry]
        if node.flow_style or not node.value:
            return None
        edits: list[Edit] = []
        keys = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        added: list[tuple[str, str]] = []
        for key, value in set_fields:
            if key in keys:
                k, v = keys[key]
                if not isinstance(v, yaml.ScalarNode) or v.start_mark.line != v.end_mark.line:
                    return None
                a, b = node_range(v, self.index)
                edits.append(Edit(a, b, _like(v, value), _WHY))
            else:
                added.append((key, value))
        for key in remove_keys:
            if key not in keys:
                continue
            k, v = keys[key]
            if k is node.value[0][0] or not _own_line(self.index, k):
                return None  # the entry's first key shares the dash's line
            start = self.index.starts[k.start_mark.line]
            edits.append(Edit(start, _line_after(self.index, v), "", _WHY))
        if added:
            col = node.value[0][0].start_mark.column
            at = _line_after(self.index, node)
            lines = "".join(f"{' ' * col}{k}: {scalar(v)}\n" for k, v in added)
            edits.append(Edit(at, at, _lead(self.index, at) + lines, _WHY))
        return self._edited(edits)

    # -- remove

    def remove(self, entry: int) -> str | None:
        nodes = self.entries
        if not 0 <= entry < len(nodes) or not isinstance(self.seq, yaml.SequenceNode):
            return None
        if self.seq.flow_style:
            return None
        node = nodes[entry]
        if self._dash_column(node) is None:
            return None
        start = self.index.starts[node.start_mark.line]
        return self._edited([Edit(start, _line_after(self.index, node), "", _WHY)])


def _block(fields: Fields, dash: int, offset: int = 2) -> str:
    """One block sequence item: ``- k: v`` then the other keys under the first."""
    lines = []
    for i, (key, value) in enumerate(fields):
        lead = " " * dash + "-" + " " * (offset - 1) if i == 0 else " " * (dash + offset)
        lines.append(f"{lead}{key}: {scalar(value)}\n")
    return "".join(lines)
