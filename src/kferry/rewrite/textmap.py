"""Where a YAML scalar's characters are in the text it was read from.

Rewriting must change only the bytes of a reference, so for every reference found (possibly
inside a JSON or YAML document held in a ConfigMap string, possibly inside a template string
inside that) we need its exact position in the original file. libyaml gives each node the
line and column where it starts and ends; this module turns a range of a scalar's *value*
into a range of its *source text* for every scalar style:

* plain and single-quoted on one line: the value is the text (``''`` escapes aside);
* double-quoted, on one line or folded over several: the escapes and line folding of
  YAML 1.2 section 7.3.1 are undone character by character (the 1.4 KFP profile controller
  ships its Python code as one such string);
* literal blocks (``|``): value line k is text line k + 1 after the indicator, minus the
  block's indentation.

Folded blocks (``>``) and multi-line plain scalars are not mapped (``None``); the caller
falls back to searching the scalar's text. No YAML library exposes this mapping, which is
why it is written here.
"""

from __future__ import annotations

import re

import yaml

_SIMPLE_ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class LineIndex:
    """Offsets of line starts, for (line, column) -> offset."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def offset(self, line: int, column: int) -> int:
        return self.starts[line] + column

    def line_end(self, line: int) -> int:
        """Offset just after the line's newline (or the end of the text)."""
        return self.starts[line + 1] if line + 1 < len(self.starts) else len(self.text)


def node_range(node: yaml.Node, index: LineIndex) -> tuple[int, int]:
    return (
        index.offset(node.start_mark.line, node.start_mark.column),
        index.offset(node.end_mark.line, node.end_mark.column),
    )


def value_range(
    node: yaml.ScalarNode, index: LineIndex, start: int, end: int
) -> tuple[int, int] | None:
    """The text range holding ``node.value[start:end]``, or None when it cannot be mapped."""
    a, b = node_range(node, index)
    style = node.style or ""
    text = index.text
    if style == "":
        if node.start_mark.line != node.end_mark.line:
            return None
        return _checked(text, node.value, a + start, start, end)
    if style == "'":
        if node.start_mark.line != node.end_mark.line or "'" in node.value[:end]:
            return None
        return _checked(text, node.value, a + 1 + start, start, end)
    if style == '"':
        offsets = _double_quoted_offsets(text, a, b, node.value)
        if offsets is None or end > len(offsets):
            return None
        first = offsets[start] if start < len(offsets) else b - 1
        last = offsets[end - 1] + 1 if end > start else first
        if text[first:last] != node.value[start:end]:
            return None  # the reference itself contains escapes: do not touch it
        return first, last
    if style == "|":
        return _literal(node, index, start, end)
    return None


def _checked(text: str, value: str, at: int, start: int, end: int) -> tuple[int, int] | None:
    n = end - start
    return (at, at + n) if text[at : at + n] == value[start:end] else None


def _literal(
    node: yaml.ScalarNode, index: LineIndex, start: int, end: int
) -> tuple[int, int] | None:
    value = node.value
    first_line = node.start_mark.line + 1
    indent = None
    for line in range(first_line, len(index.starts)):
        content = index.text[index.starts[line] : index.line_end(line)].rstrip("\n")
        if content.strip():
            indent = len(content) - len(content.lstrip(" "))
            break
    if indent is None:
        return None
    k = value.count("\n", 0, start)
    col = start - (value.rfind("\n", 0, start) + 1)
    if "\n" in value[start:end]:
        return None
    line = first_line + k
    if line >= len(index.starts):
        return None
    at = index.starts[line] + indent + col
    return _checked(index.text, value, at, start, end)


def _double_quoted_offsets(text: str, a: int, b: int, value: str) -> list[int] | None:
    """For each character of the value, the text offset it came from (None if unsure)."""
    if text[a] != '"' or text[b - 1] != '"':
        return None
    out: list[int] = []
    chars: list[str] = []
    i, stop = a + 1, b - 1
    while i < stop:
        c = text[i]
        if c == "\\":
            nxt = text[i + 1] if i + 1 < stop else ""
            if nxt in ("\n", "\r"):  # escaped line break: joins lines, drops the indentation
                i += 2
                while i < stop and text[i] in " \t":
                    i += 1
                continue
            if nxt in _SIMPLE_ESCAPES:
                chars.append(_SIMPLE_ESCAPES[nxt])
                out.append(i)
                i += 2
                continue
            if nxt in _HEX_ESCAPES:
                n = _HEX_ESCAPES[nxt]
                try:
                    chars.append(chr(int(text[i + 2 : i + 2 + n], 16)))
                except ValueError:
                    return None
                out.append(i)
                i += 2 + n
                continue
            return None
        if c in "\n\r":
            # line folding: trailing blanks before the break were already emitted; drop them
            while chars and chars[-1] in " \t" and out and text[out[-1]] in " \t":
                chars.pop()
                out.pop()
            breaks = 0
            j = i
            while j < stop and text[j] in "\n\r \t":
                if text[j] == "\n":
                    breaks += 1
                j += 1
            if breaks == 1:
                chars.append(" ")
                out.append(i)
            else:
                for _ in range(breaks - 1):
                    chars.append("\n")
                    out.append(i)
            i = j
            continue
        chars.append(c)
        out.append(i)
        i += 1
    return out if "".join(chars) == value else None
