"""Adding an item to a YAML sequence, or a key to a container, in the source text.

Used where a compiled-in default is overridden (a flag in ``args``, an env var) and by fixes.
Every inserted line is one self-contained line (flow syntax for new keys), so it keeps the
surrounding indentation and style and carries its whole meaning on that line.
"""

from __future__ import annotations

import json

import yaml

from kferry.load.documents import mapping_get
from kferry.rewrite.edits import Edit
from kferry.rewrite.textmap import LineIndex, node_range


def quoted(text: str) -> str:
    """A double-quoted YAML scalar (JSON string syntax is valid YAML)."""
    return json.dumps(text)


def _dash_column(index: LineIndex, item: yaml.Node) -> int | None:
    start = index.offset(item.start_mark.line, item.start_mark.column)
    line_start = index.starts[item.start_mark.line]
    i = start - 1
    while i >= line_start and index.text[i] == " ":
        i -= 1
    if i >= line_start and index.text[i] == "-":
        return i - line_start
    return None


def _after_node(index: LineIndex, node: yaml.Node) -> int:
    """Offset where a new line can start after ``node`` (block style).

    A block collection ends where the next token starts (often the next key's column), a
    scalar where its text ends: either way the new line goes at the start of the following
    line, or of the end line itself when only indentation precedes the end.
    """
    end = node_range(node, index)[1]
    line_start = index.starts[node.end_mark.line]
    if not index.text[line_start:end].strip():
        return line_start
    return index.line_end(node.end_mark.line)


def append_items(
    index: LineIndex, seq: yaml.SequenceNode, items: list[str], why: str
) -> Edit | None:
    """Add ``items`` (YAML text of one item each) at the end of a sequence."""
    text = index.text
    if seq.flow_style:
        a, b = node_range(seq, index)
        close = text.rfind("]", a, b)
        if close == -1:
            return None
        sep = ", " if seq.value else ""
        return Edit(close, close, sep + ", ".join(items), why)
    if not seq.value:
        return None
    dash = _dash_column(index, seq.value[0])
    if dash is None:
        return None
    at = _after_node(index, seq.value[-1])
    lead = "" if at == 0 or text[at - 1] == "\n" else "\n"
    return Edit(at, at, lead + "".join(f"{' ' * dash}- {item}\n" for item in items), why)


def add_key(
    index: LineIndex, mapping: yaml.MappingNode, after_key: str, line: str, why: str
) -> Edit | None:
    """Add ``key: value`` (one line of YAML) to a block mapping, after ``after_key``."""
    if mapping.flow_style:
        return None
    anchor = None
    for k, v in mapping.value:
        if k.value == after_key:
            anchor = (k, v)
    if anchor is None:
        return None
    key, value = anchor
    if not isinstance(value, yaml.ScalarNode) or value.end_mark.line != key.start_mark.line:
        return None
    at = _after_node(index, value)
    lead = "" if at == 0 or index.text[at - 1] == "\n" else "\n"
    return Edit(at, at, f"{lead}{' ' * key.start_mark.column}{line}\n", why)


def set_args(
    index: LineIndex, container: yaml.MappingNode, flags: list[tuple[str, str]], why: str
) -> Edit | None:
    """Give ``--flag=value`` flags to a container (None when adding args would replace the
    image's CMD, i.e. the container has neither ``args`` nor ``command``)."""
    items = [quoted(f"{flag}={value}") for flag, value in flags]
    args = mapping_get(container, "args")
    if isinstance(args, yaml.SequenceNode):
        return append_items(index, args, items, why)
    if args is None and mapping_get(container, "command") is not None:
        return add_key(index, container, "image", f"args: [{', '.join(items)}]", why)
    return None


def set_envs(
    index: LineIndex, container: yaml.MappingNode, env_vars: list[tuple[str, str]], why: str
) -> Edit | None:
    """Add ``name=value`` variables to a container's env."""
    items = [f"{{name: {name}, value: {quoted(value)}}}" for name, value in env_vars]
    env = mapping_get(container, "env")
    if isinstance(env, yaml.SequenceNode):
        return append_items(index, env, items, why)
    if env is None:
        return add_key(index, container, "image", f"env: [{', '.join(items)}]", why)
    return None


def add_first_key(index: LineIndex, mapping: yaml.MappingNode, line: str, why: str) -> Edit | None:
    """Add one line of YAML as the first key of a block mapping (same indentation)."""
    if mapping.flow_style or not mapping.value:
        return None
    first = mapping.value[0][0]
    at = index.offset(first.start_mark.line, first.start_mark.column)
    line_start = index.starts[first.start_mark.line]
    if index.text[line_start:at].strip():
        return None  # "- key: ..." : the mapping starts on a list item line
    return Edit(line_start, line_start, f"{' ' * first.start_mark.column}{line}\n", why)


def remove_item(index: LineIndex, seq: yaml.SequenceNode, item: yaml.Node, why: str) -> Edit | None:
    """Delete one item of a block sequence (its whole lines)."""
    if seq.flow_style or _dash_column(index, item) is None:
        return None
    start = index.starts[item.start_mark.line]
    end = _after_node(index, item)
    return Edit(start, end, "", why)


def replace_scalar(index: LineIndex, node: yaml.ScalarNode, new: str, why: str) -> Edit:
    """Replace a one-line scalar's whole text (quotes included) with ``new``."""
    a, b = node_range(node, index)
    return Edit(a, b, new, why)
