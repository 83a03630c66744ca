"""YAML documents -> Kubernetes objects, keeping every node's position.

Documents are *composed* (YAML nodes with start/end marks), not constructed into Python
values: libyaml's C composer is faster than a full ``yaml.load`` and the marks let the rewrite
stage replace exactly the bytes of a reference. The cyclic garbage collector is paused while
composing and the composed nodes are then frozen (``gc.freeze``): the node graph is large
and lives as long as the run, so collection passes over it would only cost time.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

from kferry.errors import InputError
from kferry.load.source import Source

try:  # libyaml is the fast path; the pure-Python loader keeps kferry working without it
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

STR_TAG = "tag:yaml.org,2002:str"
NULL_TAG = "tag:yaml.org,2002:null"


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document of a source: ``index`` counts from 1 as a reader would."""

    source: Source
    index: int
    node: yaml.Node

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def where(self) -> str:
        return f"{self.source.name}: document {self.index} (line {self.line})"


@dataclass(frozen=True, slots=True)
class KubeObject:
    """A Kubernetes object: a mapping node with kind/name/namespace read out once."""

    document: Document
    node: yaml.MappingNode
    api_version: str
    kind: str
    name: str
    namespace: str
    item: int | None = None  # position inside a List document

    @property
    def ref(self) -> str:
        """``Kind/namespace/name`` (namespace empty for cluster-scoped objects)."""
        return f"{self.kind}/{self.namespace}/{self.name}"

    def where(self) -> str:
        suffix = f", items[{self.item}]" if self.item is not None else ""
        return f"{self.document.where()}{suffix} {self.ref}"


def mapping_get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node under ``key`` in a mapping node, or ``None``."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if k.value == key and isinstance(k, yaml.ScalarNode):
            return v  # type: ignore[no-any-return]
    return None


def scalar_str(node: yaml.Node | None) -> str | None:
    """The text of a string scalar (not numbers, booleans or nulls), else ``None``."""
    if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
        return node.value  # type: ignore[no-any-return]
    return None


def scalar_text(node: yaml.Node | None) -> str | None:
    """The text of any non-null scalar (``1.10`` stays ``"1.10"``), else ``None``."""
    if isinstance(node, yaml.ScalarNode) and node.tag != NULL_TAG:
        return node.value  # type: ignore[no-any-return]
    return None


def compose_all(text: str) -> Iterator[yaml.Node | None]:
    """Compose every document of ``text`` with libyaml (GC paused while it runs)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield from yaml.compose_all(text, Loader=_Loader)
    finally:
        if enabled:
            gc.enable()


def _kind_of(node: yaml.MappingNode) -> str | None:
    return scalar_text(mapping_get(node, "kind"))


def _object(doc: Document, node: yaml.Node, item: int | None) -> KubeObject:
    where = doc.where() + (f", items[{item}]" if item is not None else "")
    if not isinstance(node, yaml.MappingNode):
        got = "a sequence" if isinstance(node, yaml.SequenceNode) else f"the scalar {node.value!r}"
        raise InputError(f"{where}: expected a Kubernetes object (a mapping), got {got}")
    kind = _kind_of(node)
    if not kind:
        raise InputError(f"{where}: not a Kubernetes object: no 'kind'")
    meta = mapping_get(node, "metadata")
    name = scalar_text(mapping_get(meta, "name")) if meta is not None else None
    namespace = scalar_text(mapping_get(meta, "namespace")) if meta is not None else None
    return KubeObject(
        document=doc,
        node=node,
        api_version=scalar_text(mapping_get(node, "apiVersion")) or "",
        kind=kind,
        name=name or "",
        namespace=namespace or "",
        item=item,
    )


def yaml_error(name: str, document: int, exc: yaml.YAMLError) -> InputError:
    """One line naming the input, the document number and the line of a YAML error."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "malformed YAML"
        return InputError(f"{name}: document {document}{line}: malformed YAML: {problem}")
    return InputError(f"{name}: document {document}: malformed YAML: {exc}")


def parse_documents(source: Source) -> list[Document]:
    """All non-empty documents of ``source``; malformed YAML -> :class:`InputError`."""
    docs: list[Document] = []
    index = 0
    try:
        for node in compose_all(source.text):
            index += 1
            if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG):
                continue
            docs.append(Document(source, index, node))
    except yaml.YAMLError as exc:
        raise yaml_error(source.name, index + 1, exc) from None
    # The nodes live until the process ends: move them out of the collector's sight, or
    # every later collection pass walks millions of them (measured: 20x slower discovery).
    gc.freeze()
    return docs


def objects(doc: Document) -> Iterator[KubeObject]:
    """The Kubernetes objects of a document: itself, or the items of a ``*List`` kind."""
    node = doc.node
    if isinstance(node, yaml.MappingNode):
        kind = _kind_of(node)
        items = mapping_get(node, "items")
        if kind and kind.endswith("List") and isinstance(items, yaml.SequenceNode):
            for i, item in enumerate(items.value):
                yield _object(doc, item, i)
            return
    yield _object(doc, node, None)


def load_objects(sources: list[Source]) -> tuple[list[KubeObject], list[str]]:
    """Every Kubernetes object of the sources, and warnings (sources without objects)."""
    out: list[KubeObject] = []
    warnings: list[str] = []
    for source in sources:
        before = len(out)
        for doc in parse_documents(source):
            out.extend(objects(doc))
        if len(out) == before:
            warnings.append(f"{source.name}: no Kubernetes objects in this input")
    return out, warnings
