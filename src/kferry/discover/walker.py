"""The generic walk: image fields (group a) and images inside strings (group b).

One pass over every object that is not documentation, keeping the path as a token stack that
is formatted only when something is found. Where a value is an image is decided by context
(see :mod:`kferry.discover.heuristics`): container and CR ``image`` fields, keys / env vars /
flags named ``...image``, collections under such keys, ConfigMap values that are JSON or
YAML documents (walked the same way, recursively), and ``image: X`` lines in text that is
not a document (Go templates such as istio's injection templates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

import yaml

from kferry.catalog import Catalog
from kferry.discover.embedded import EmbeddedCache
from kferry.discover.heuristics import (
    flag_name,
    is_bare_word,
    is_image_collection_key,
    is_image_key,
    is_placeholder,
    looks_like_image,
)
from kferry.discover.model import Finding, How, Location, Part
from kferry.discover.paths import Token, format_path, item_token, key_token
from kferry.errors import InputError
from kferry.load.documents import NULL_TAG, KubeObject, mapping_get, scalar_str, scalar_text
from kferry.name import InvalidReference, parse

Mode = Literal["strong", "silent", "strict"]
CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})

_INLINE_FLAG = re.compile(
    r"(?:^|\s)--?([A-Za-z0-9][A-Za-z0-9_.-]*)(?:=|[ \t]+)([\"']?)([^\s\"';|&]+)\2"
)
_IMAGE_LINE = re.compile(
    r"^[ \t]*(?:-[ \t]+)?[\"']?image[\"']?[ \t]*:[ \t]*([\"']?)([^\s\"'#,{}\[\]]+)\1"
    r"[ \t]*,?[ \t]*(?:#.*)?$",
    re.M,
)


@dataclass(frozen=True, slots=True)
class Ctx:
    how: How = "field"
    collection: bool = False  # under a key such as ``image:`` / ``imageGroupOne:``
    embeds: tuple[tuple[str, yaml.ScalarNode], ...] = ()


class ObjectWalker:
    """Walks one object; ``findings`` and ``problems`` hold what it found."""

    def __init__(
        self, obj: KubeObject, catalog: Catalog, cache: EmbeddedCache, claimed: set[int]
    ) -> None:
        self.obj = obj
        self.catalog = catalog
        self.cache = cache
        self.claimed = claimed
        self.tokens: list[Token] = []
        self.findings: list[Finding] = []
        self.problems: list[Finding] = []
        self.warnings: list[str] = []

    def _warn(self, what: str) -> None:
        self.warnings.append(f"{self.obj.where()}: {format_path(self.tokens)}: {what}")

    # -- entry -----------------------------------------------------------------------------
    def run(self) -> None:
        obj = self.obj
        if obj.kind in self.catalog.documentation_kinds or obj.kind in self.catalog.skipped_kinds:
            return
        if obj.kind == "ConfigMap":
            self._configmap()
            return
        self._walk(obj.node, Ctx())

    def _configmap(self) -> None:
        data = mapping_get(self.obj.node, "data")
        if not isinstance(data, yaml.MappingNode):
            return
        ctx = Ctx(how="string")
        self.tokens.append(key_token("data"))
        for k, v in data.value:
            key = k.value
            if key in self.catalog.documentation_keys or id(v) in self.claimed:
                continue
            if not isinstance(v, yaml.ScalarNode):
                continue
            self.tokens.append(key_token(key))
            text = scalar_text(v)
            if text is not None:
                if is_image_key(key) and "\n" not in text.strip():
                    self._candidate(text, v, ctx, "strong")
                else:
                    self._string(v, ctx)
            self.tokens.pop()
        self.tokens.pop()

    # -- structure ---------------------------------------------------------------------------
    def _walk(self, node: yaml.Node, ctx: Ctx) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if id(v) in self.claimed or not isinstance(k, yaml.ScalarNode):
                    continue
                key = k.value
                if not ctx.embeds and key == "status":
                    continue
                self.tokens.append(key_token(key))
                if key in CONTAINER_LISTS and not ctx.embeds:
                    self._containers_shape(node, v)
                if isinstance(v, yaml.ScalarNode):
                    self._scalar(key, v, ctx, node)
                elif key == "env" and isinstance(v, yaml.SequenceNode):
                    self._env(v, ctx)
                elif key in ("args", "command") and isinstance(v, yaml.SequenceNode):
                    self._args(v, ctx)
                else:
                    collection = ctx.collection or is_image_collection_key(key)
                    self._walk(v, replace(ctx, collection=collection) if collection else ctx)
                self.tokens.pop()
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                if id(item) in self.claimed:
                    continue
                self.tokens.append(item_token(i, item))
                if isinstance(item, yaml.ScalarNode):
                    text = scalar_str(item)
                    if text is not None and ctx.collection:
                        self._candidate(text, item, ctx, "strict")
                    elif text is not None and ctx.embeds and "\n" in text:
                        self._string(item, ctx)
                else:
                    self._walk(item, ctx)
                self.tokens.pop()

    def _containers_shape(self, spec: yaml.MappingNode, value: yaml.Node) -> None:
        """Pod spec shapes that would hide images: said out loud (duplicate keys: an error)."""
        _no_duplicates(self.obj, spec, self.tokens[:-1])
        if isinstance(value, yaml.ScalarNode) and value.tag == NULL_TAG:
            return
        if not isinstance(value, yaml.SequenceNode):
            self._warn(f"not a list of containers ({_shape(value)}); images in it are not read")
            return
        for i, item in enumerate(value.value):
            self.tokens.append(item_token(i, item))
            if not isinstance(item, yaml.MappingNode):
                self._warn(f"not a container ({_shape(item)}); its image is not read")
            else:
                _no_duplicates(self.obj, item, self.tokens)
                image = mapping_get(item, "image")
                if image is not None and scalar_str(image) is None:
                    self.tokens.append(key_token("image"))
                    self._warn(f"image is {_shape(image)}, not an image reference; not read")
                    self.tokens.pop()
            self.tokens.pop()

    def _scalar(self, key: str, node: yaml.ScalarNode, ctx: Ctx, parent: yaml.MappingNode) -> None:
        text = scalar_str(node)
        if text is None:
            return
        if key == "image" or is_image_key(key):
            if is_bare_word(text) and mapping_get(parent, "name") is None:
                return  # "image: proxyv2" in helm-style values is a part, not a reference
            self._candidate(text, node, ctx, "strong")
        elif ctx.collection:
            self._candidate(text, node, ctx, "strict")
        elif ctx.embeds and "\n" in text:
            self._string(node, ctx)

    def _string(self, node: yaml.ScalarNode, ctx: Ctx) -> None:
        """A string that may be a document (JSON/YAML) or text with ``image:`` lines."""
        parsed = self.cache.parse(node, self.obj.document.source.name)
        if parsed is not None:
            fmt, roots = parsed
            inner = Ctx(how="string", embeds=(*ctx.embeds, (fmt, node)))
            for j, root in enumerate(roots):
                self.tokens.append(("e", fmt if len(roots) == 1 else f"{fmt}[{j}]"))
                self._walk(root, inner)
                self.tokens.pop()
            return
        error = self.cache.take_error(node)
        if error is not None and "image" in node.value:
            self._warn(f"looks like JSON but cannot be read ({error}); images in it are not found")
        text = node.value
        if "\n" not in text or "image" not in text:
            return
        for m in _IMAGE_LINE.finditer(text):
            self._candidate(m.group(2), node, replace(ctx, how="string"), "silent", m.span(2))

    def _env(self, seq: yaml.SequenceNode, ctx: Ctx) -> None:
        sctx = replace(ctx, how="string")
        for i, item in enumerate(seq.value):
            name = scalar_text(mapping_get(item, "name"))
            value = mapping_get(item, "value")
            text = scalar_str(value)
            if name and is_image_key(name) and text is not None:
                assert isinstance(value, yaml.ScalarNode)
                self.tokens += [item_token(i, item), key_token("value")]
                self._candidate(text, value, sctx, "strong")
                del self.tokens[-2:]

    def _args(self, seq: yaml.SequenceNode, ctx: Ctx) -> None:
        sctx = replace(ctx, how="string")
        items = seq.value
        for i, item in enumerate(items):
            text = scalar_str(item)
            if text is None:
                continue
            if any(c.isspace() for c in text):  # a shell line: look for flags inside it
                for m in _INLINE_FLAG.finditer(text):
                    if is_image_key(m.group(1)):
                        self.tokens.append(("i", str(i)))
                        self._candidate(m.group(3), item, sctx, "strong", m.span(3))
                        self.tokens.pop()
                continue
            flag = flag_name(text)
            if flag is None or not is_image_key(flag[0]):
                continue
            value = flag[1]
            if value is not None:
                self.tokens.append(("i", str(i)))
                self._candidate(value, item, sctx, "strong", (len(text) - len(value), len(text)))
                self.tokens.pop()
            elif i + 1 < len(items):
                nxt = items[i + 1]
                nxt_text = scalar_str(nxt)
                if nxt_text is not None and not nxt_text.startswith("-"):
                    self.tokens.append(("i", str(i + 1)))
                    self._candidate(nxt_text, nxt, sctx, "strong")
                    self.tokens.pop()

    # -- a candidate reference -----------------------------------------------------------------
    def _candidate(
        self,
        text: str,
        node: yaml.ScalarNode,
        ctx: Ctx,
        mode: Mode,
        span: tuple[int, int] | None = None,
    ) -> None:
        if mode == "strict":
            ref = looks_like_image(text)
            if ref is None:
                return
        else:
            if not text.strip() or is_placeholder(text):
                return
            try:
                ref = parse(text)
            except InvalidReference as exc:
                if mode == "strong":
                    self.problems.append(
                        Finding(text, None, self._location(node, ctx, span), exc.reason)
                    )
                return
        self.findings.append(Finding(text, ref, self._location(node, ctx, span)))

    def _location(self, node: yaml.ScalarNode, ctx: Ctx, span: tuple[int, int] | None) -> Location:
        path = format_path(self.tokens)
        obj = self.obj
        return Location(
            object=obj.ref,
            path=path,
            how=ctx.how,
            optional=self.catalog.optional_reason(obj.kind, obj.name, path),
            parts=(Part(node, ctx.embeds, span),),
            owner=obj,
        )


def _shape(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == NULL_TAG:
        return "empty"
    kind = node.tag.rsplit(":", 1)[-1]
    return f"the {kind} {node.value!r}" if kind != "str" else f"the string {node.value!r}"


def _no_duplicates(obj: KubeObject, mapping: yaml.MappingNode, tokens: list[Token]) -> None:
    """Duplicate keys in a pod spec or container: which one wins differs between YAML
    readers (the API server takes the last), so what runs may not be what kferry read."""
    seen: dict[str, int] = {}
    for k, _ in mapping.value:
        if not isinstance(k, yaml.ScalarNode):
            continue
        line = int(k.start_mark.line) + 1
        if k.value in seen:
            path = format_path(tokens) or "."
            raise InputError(
                f"{obj.where()}: {path}: duplicate key {k.value!r} (lines {seen[k.value]} and "
                f"{line}); keep one"
            )
        seen[k.value] = line
