"""``-f FILE|-``: InferenceService objects from a file or stdin, as plain dicts.

Accepted: one object, several YAML documents, a ``List`` (``kubectl get isvc -A -o json``), a
JSON array, or a stream of concatenated JSON objects (``kubectl get isvc -o json --watch``;
the last version of each object wins). Objects of other kinds are skipped with a warning; an
object without ``kind`` but with a ``status`` is taken as an InferenceService status sample.
Bad input is an :class:`InputError` (exit code 2) whose one-line message names the input, the
document and the line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from kferry.errors import InputError
from kferry.load.documents import yaml_error
from kferry.load.source import decode, read_capped
from kferry.objref import ref_of

try:  # libyaml when PyYAML was built with it
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

ISVC_KINDS = frozenset({"InferenceService", "KFService"})

Obj = Mapping[str, Any]


@dataclass
class Loaded:
    """What an input held: the InferenceServices, and warnings for what was skipped."""

    name: str
    objects: list[Obj] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_bytes(path: str, stdin: BinaryIO | None = None) -> tuple[str, bytes]:
    """``(name for messages, bytes)`` of a file or ``-`` (stdin)."""
    if path == "-":
        return "<stdin>", read_capped("<stdin>", stdin or sys.stdin.buffer)
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as f:
            return path, read_capped(path, f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; give a file or '-'") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _json_documents(name: str, text: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            return
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{name}: line {exc.lineno}, column {exc.colno}: malformed JSON: {exc.msg}"
            ) from None
        yield doc


def _yaml_documents(name: str, text: str) -> list[Any]:
    docs: list[Any] = []
    try:
        for doc in yaml.load_all(text, Loader=_Loader):
            docs.append(doc)
    except yaml.YAMLError as exc:
        raise yaml_error(name, len(docs) + 1, exc) from None
    return docs


def parse_documents(name: str, text: str) -> list[Any]:
    """The documents of a JSON or YAML text (JSON when it starts like JSON)."""
    if text.lstrip().startswith(("{", "[")):
        try:
            return list(_json_documents(name, text))
        except InputError as json_error:
            try:  # flow-style YAML also starts with '{'
                return _yaml_documents(name, text)
            except InputError:
                raise json_error from None
    return _yaml_documents(name, text)


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"the value {value!r}"


def _items(name: str, docs: list[Any]) -> Iterator[tuple[str, Obj]]:
    """``(where, object)`` for every object, ``List`` kinds and JSON arrays unpacked."""
    for d, doc in enumerate(docs, 1):
        where = f"{name}: document {d}" if len(docs) > 1 else name
        if doc is None:
            continue
        items: Any = None
        if isinstance(doc, list):
            items = doc
        elif isinstance(doc, Mapping):
            kind = doc.get("kind")
            if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
                items = doc.get("items") or []
                if not isinstance(items, list):
                    raise InputError(f"{where}: {kind} 'items' is not a list")
            else:
                yield where, doc
                continue
        else:
            raise InputError(
                f"{where}: expected an InferenceService object or a List, got {_describe(doc)}"
            )
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InputError(f"{where}, items[{i}]: expected an object, got {_describe(item)}")
            yield f"{where}, items[{i}]", item


def _key(obj: Obj) -> tuple[str, str] | None:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name"):
        return None
    return str(meta.get("namespace") or ""), str(meta["name"])


def load_text(name: str, text: str) -> Loaded:
    """The InferenceServices of a text; see the module docstring."""
    if not text.strip():
        raise InputError(f"{name}: empty input; expected InferenceService objects (JSON or YAML)")
    loaded = Loaded(name)
    seen: dict[tuple[str, str], int] = {}
    others: list[str] = []
    for where, obj in _items(name, parse_documents(name, text)):
        kind = obj.get("kind")
        if kind in ISVC_KINDS or (not kind and isinstance(obj.get("status"), Mapping)):
            key = _key(obj)
            if key is not None and key in seen:  # a later version of the same object
                loaded.objects[seen[key]] = obj
                continue
            if key is not None:
                seen[key] = len(loaded.objects)
            loaded.objects.append(obj)
        elif not kind:
            raise InputError(f"{where}: not a Kubernetes object: no 'kind' and no 'status'")
        else:
            others.append(str(kind))
            loaded.warnings.append(f"{where}: skipping {ref_of(obj)}: not an InferenceService")
    if others and not loaded.objects:
        kinds = ", ".join(sorted(set(others)))
        raise InputError(f"{name}: no InferenceService in this input (found {kinds})")
    return loaded


def load_file(path: str, stdin: BinaryIO | None = None) -> Loaded:
    """The InferenceServices of a file, or of stdin for ``-``."""
    name, data = read_bytes(path, stdin)
    return load_text(name, decode(name, data))
