"""YAML documents -> Kubernetes objects, keeping every node's position.

Documents are *composed* (YAML nodes with start/end marks), not constructed into Python
values: libyaml's C composer is faster than a full ``yaml.load`` and the marks let the rewrite
stage replace exactly the bytes of a reference. The cyclic garbage collector is paused while
composing and the composed nodes are then frozen (``gc.freeze``): the node graph is large
and lives as long as the run, so collection passes over it would only cost time.

Aliases are not expanded by composing (an alias is the anchored node, shared), but every walk
over the nodes expands them: a few hundred bytes of nested anchors ("billion laughs") become
billions of visits, and a recursive alias an endless walk. :func:`check_aliases` measures the
expanded size of each document in one pass over its distinct nodes (linear time) and refuses
one that expands past ``MAX_EXPANDED_NODES`` (or aliases beyond ``MAX_ALIAS_EXTRA`` nodes in
one input), naming the file and line; it runs only where the text can hold an anchor at all.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

from kferry.errors import InputError
from kferry.load.source import Source
from kferry.objref import object_ref

try:  # libyaml is the fast path; the pure-Python loader keeps kferry working without it
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

STR_TAG = "tag:yaml.org,2002:str"
NULL_TAG = "tag:yaml.org,2002:null"

# The largest document of a whole Kubeflow release has about 60 000 nodes; aliases (which no
# rendered release uses) may add at most MAX_ALIAS_EXTRA visits per input.
MAX_EXPANDED_NODES = 2_000_000
MAX_ALIAS_EXTRA = 1_000_000
_ANCHOR = re.compile(r"&[^\s,\[\]{}&]")  # a literal first: found at memchr speed


class AliasBomb(Exception):
    """Aliases that expand past the bounds (or refer to themselves); ``line`` is 0-based."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def may_have_aliases(text: str) -> bool:
    """False when ``text`` cannot hold a YAML anchor (so no alias): the check is skipped."""
    for m in _ANCHOR.finditer(text):
        start = m.start()
        if start == 0 or text[start - 1] in " \t\n\r[{,:-!":
            return True
    return False


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def expanded_size(root: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> tuple[int, int]:
    """(nodes a walk visits with aliases expanded, distinct nodes); :class:`AliasBomb` past
    ``limit`` or on a recursive alias. One pass over the distinct nodes, no recursion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            if total > limit:
                raise AliasBomb(
                    node.start_mark.line,
                    f"YAML aliases expand to more than {limit:,} nodes (an alias bomb?)",
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise AliasBomb(node.start_mark.line, "a YAML alias refers to itself (endless)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)], len(sizes)


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
        return object_ref(self.kind, self.namespace, self.name)

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


def check_aliases(roots: list[yaml.Node], extra_budget: int = MAX_ALIAS_EXTRA) -> None:
    """:class:`AliasBomb` (with ``index`` of the root) when aliases expand past the bounds."""
    extra = 0
    for root in roots:
        total, distinct = expanded_size(root)
        extra += total - distinct
        if extra > extra_budget:
            raise AliasBomb(
                root.start_mark.line,
                f"YAML aliases add more than {extra_budget:,} nodes to walk (an alias bomb?)",
            )


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
    except RecursionError:
        raise InputError(
            f"{source.name}: document {index + 1}: YAML nested too deeply to read"
        ) from None
    # The nodes live until the process ends: move them out of the collector's sight, or
    # every later collection pass walks millions of them (measured: 20x slower discovery;
    # and 0.6 s for the alias check below when it ran before the freeze).
    gc.freeze()
    if may_have_aliases(source.text):
        extra = 0
        for doc in docs:
            try:
                total, distinct = expanded_size(doc.node)
            except AliasBomb as exc:
                raise InputError(
                    f"{source.name}: document {doc.index}, line {exc.line + 1}: {exc.problem}; "
                    "refused"
                ) from None
            extra += total - distinct
            if extra > MAX_ALIAS_EXTRA:
                raise InputError(
                    f"{source.name}: document {doc.index} (line {doc.line}): YAML aliases add "
                    f"more than {MAX_ALIAS_EXTRA:,} nodes to walk (an alias bomb?); refused"
                )
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
            for obj in objects(doc):
                for key in ("kind", "apiVersion"):
                    node = mapping_get(obj.node, key)
                    if node is not None and scalar_str(node) is None:
                        warnings.append(
                            f"{obj.where()}: {key} is not a string "
                            f"({node.value!r} is read as {obj.kind if key == 'kind' else 'text'!r})"
                        )
                out.append(obj)
        if len(out) == before:
            warnings.append(f"{source.name}: no Kubernetes objects in this input")
    return out, warnings
