"""Location paths as kferry prints them, and navigation of YAML nodes by such paths.

Format (also used by the ground-truth files): ``spec.template.spec.containers[name=dex].image``,
``data['spawner_ui_config.yaml']|yaml:.spawnerFormDefaults.image.options[0]``: dotted keys,
``['key']`` for keys that are not plain words, ``[name=x]`` for list items with a name,
``[i]`` otherwise, and ``|json:`` / ``|yaml:`` where a string is parsed as a document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import yaml

from kferry.load.documents import mapping_get, scalar_text

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

# A path token: ("k", key) | ("i", label) | ("e", format) for an embedded document.
Token = tuple[str, str]


def key_token(key: str) -> Token:
    return ("k", key)


def item_token(index: int, item: yaml.Node) -> Token:
    """``[name=x]`` (or ``[kind=x]``) for named list items, ``[i]`` otherwise."""
    if isinstance(item, yaml.MappingNode):
        for label in ("name", "kind"):
            value = scalar_text(mapping_get(item, label))
            if value:
                return ("i", f"{label}={value}")
    return ("i", str(index))


def format_path(tokens: Sequence[Token]) -> str:
    out: list[str] = []
    start = True  # at the start of a (possibly embedded) path
    embedded = False
    for kind, text in tokens:
        if kind == "k":
            if _PLAIN_KEY.match(text):
                out.append(("." if (not start or embedded) else "") + text)
            else:
                out.append(f"[{text!r}]")
            start = False
        elif kind == "i":
            out.append(f"[{text}]")
            start = False
        else:  # embedded document
            out.append(f"|{text}:")
            start, embedded = True, True
    return "".join(out)


def node_at(root: yaml.Node, dotted: str) -> yaml.Node | None:
    """Follow ``.a.b.c`` through mapping nodes; ``None`` where a key is missing."""
    node: yaml.Node | None = root
    for key in dotted.strip(".").split("."):
        node = mapping_get(node, key) if node is not None else None
        if node is None:
            return None
    return node
