"""Composed images (group c): references no single string holds, built from catalog recipes.

The recipe data (``catalog/data/composed.yaml``) says where the parts live; this module knows
only the three ways parts are joined. Every node a recipe uses as a part is *claimed*, so the
generic walker does not also report ``proxyv2`` or ``kserve/sklearnserver`` on their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from kferry.catalog import Catalog, ComposedRecipe
from kferry.discover.embedded import EmbeddedCache
from kferry.discover.model import Finding, Location, Part
from kferry.discover.objects import EnvValue, ObjectIndex, containers
from kferry.discover.paths import format_path, key_token, node_at
from kferry.load.documents import KubeObject, mapping_get, scalar_text
from kferry.name import try_parse


class Composer:
    def __init__(self, catalog: Catalog, index: ObjectIndex, cache: EmbeddedCache) -> None:
        self.catalog = catalog
        self.index = index
        self.cache = cache
        self.claimed: set[int] = set()
        self.findings: list[Finding] = []
        self.notes: list[str] = []

    def run(self) -> None:
        for recipe in self.catalog.composed:
            for cm in self.index.configmaps_named(recipe.name):
                data = mapping_get(cm.node, "data")
                for key in recipe.keys:
                    value = mapping_get(data, key)
                    if not isinstance(value, yaml.ScalarNode):
                        continue
                    if recipe.style == "code-env-default":
                        self._code(recipe, cm, key, value)
                        continue
                    parsed = self.cache.parse(value, cm.document.source.name)
                    if parsed is None:
                        error = self.cache.take_error(value)
                        if error is not None:
                            self.notes.append(
                                f"{cm.where()}: data.{key}: cannot be read as JSON ({error}); "
                                "the images it names are not found"
                            )
                        continue
                    fmt, roots = parsed
                    prefix = format_path([key_token("data"), key_token(key), ("e", fmt)])
                    embeds = ((fmt, value),)
                    for root in roots:
                        if recipe.style == "hub-image-tag":
                            self._hub_image_tag(recipe, cm, root, prefix, embeds)
                        else:
                            self._image_version(recipe, cm, root, prefix, embeds)

    # -- styles ----------------------------------------------------------------------------------
    def _hub_image_tag(
        self,
        recipe: ComposedRecipe,
        cm: KubeObject,
        root: yaml.Node,
        prefix: str,
        embeds: tuple[tuple[str, yaml.ScalarNode], ...],
    ) -> None:
        image = _first(root, recipe.image)
        if image is None:
            return
        image_path, image_node = image
        self.claimed.add(id(image_node))
        if "/" in image_node.value:  # istio uses a full reference as it is
            self._add(
                recipe, cm, image_node.value, f"{prefix}{image_path}", [(image_node, "ref")], embeds
            )
            return
        hub, tag = _first(root, recipe.hub), _first(root, recipe.tag)
        if hub is None or tag is None:
            self.notes.append(f"{cm.ref}: {recipe.id}: no hub or tag next to {image_path}")
            return
        variant = _first(root, recipe.variant)
        text = f"{hub[1].value}/{image_node.value}:{tag[1].value}"
        if variant is not None:
            text += f"-{variant[1].value}"
        path = f"{prefix}{hub[0]} + {image_path} + {tag[0]}"
        parts = [(hub[1], "hub"), (image_node, "image"), (tag[1], "tag")]
        self._add(recipe, cm, text, path, parts, embeds)

    def _image_version(
        self,
        recipe: ComposedRecipe,
        cm: KubeObject,
        root: yaml.Node,
        prefix: str,
        embeds: tuple[tuple[str, yaml.ScalarNode], ...],
    ) -> None:
        for path, mapping in _mappings(root, ""):
            image_node = mapping_get(mapping, recipe.image_key)
            image = scalar_text(image_node)
            if image is None or not isinstance(image_node, yaml.ScalarNode):
                continue
            versions = [
                (key, node)
                for key in recipe.version_keys
                if isinstance(node := mapping_get(mapping, key), yaml.ScalarNode)
                and scalar_text(node)
            ]
            if not versions:
                continue
            self.claimed.add(id(image_node))
            for key, node in versions:
                text = f"{image}:{node.value}"
                where = f"{prefix}{path}.{recipe.image_key} + {path}.{key}"
                self._add(recipe, cm, text, where, [(image_node, "image"), (node, "tag")], embeds)

    def _code(
        self, recipe: ComposedRecipe, cm: KubeObject, key: str, value: yaml.ScalarNode
    ) -> None:
        if recipe.pattern is None:
            return
        self.claimed.add(id(value))
        runners = list(self.index.mounting(cm))
        envs: list[dict[str, EnvValue]] = [
            self.index.env(c) for runner in runners for c in containers(runner)
        ]
        code_path = format_path([key_token("data"), key_token(key)])
        for m in recipe.pattern.finditer(value.value):
            name, default = m.group("name"), m.group("default")
            for env in envs or [{}]:
                repo = env.get(f"{name}_IMAGE")
                repo_text = repo.value if repo is not None and repo.value else default
                tag_env = [t.format(name=name) for t in recipe.tag_env]
                tag = next((env[t] for t in tag_env if t in env and env[t].value), None)
                if tag is None or tag.value is None:
                    self.notes.append(
                        f"{cm.ref}: {name}_IMAGE: no tag found in {' / '.join(tag_env)}"
                    )
                    continue
                origin = " or ".join(tag_env[:-1])
                origin = f"{origin} or " if origin else ""
                where = (
                    f"{code_path} os.environ.get(\"{name}_IMAGE\", default) + ':' + "
                    f"({origin}{tag_env[-1]}<-{tag.origin})"
                )
                parts: list[tuple[yaml.ScalarNode, str]] = []
                if tag.node is not None:
                    parts.append((tag.node, "tag"))
                self._add(
                    recipe,
                    cm,
                    f"{repo_text}:{tag.value}",
                    where,
                    parts,
                    (),
                    value,
                    m.span("default"),
                )

    # -- output ----------------------------------------------------------------------------------
    def _add(
        self,
        recipe: ComposedRecipe,
        cm: KubeObject,
        text: str,
        path: str,
        parts: list[tuple[yaml.ScalarNode, str]],
        embeds: tuple[tuple[str, yaml.ScalarNode], ...],
        code: yaml.ScalarNode | None = None,
        code_span: tuple[int, int] | None = None,
    ) -> None:
        ref = try_parse(text)
        all_parts = [Part(node, embeds, None, role) for node, role in parts]
        if code is not None:
            all_parts.insert(0, Part(code, (), code_span, "image"))
        location = Location(
            object=cm.ref,
            path=path,
            how="composed",
            optional=self.catalog.optional_reason(cm.kind, cm.name, path),
            note=recipe.note,
            parts=tuple(all_parts),
            owner=cm,
        )
        if ref is None:
            self.notes.append(f"{cm.ref} {path}: composed {text!r} is not a valid reference")
            return
        self.findings.append(Finding(text, ref, location))


def _first(root: yaml.Node, paths: tuple[str, ...]) -> tuple[str, yaml.ScalarNode] | None:
    """The first path that names a non-empty scalar."""
    for path in paths:
        node = node_at(root, path)
        if isinstance(node, yaml.ScalarNode) and scalar_text(node):
            return path, node
    return None


def _mappings(node: yaml.Node, path: str) -> Iterator[tuple[str, yaml.MappingNode]]:
    if isinstance(node, yaml.MappingNode):
        yield path, node
        for k, v in node.value:
            if isinstance(v, yaml.MappingNode):
                yield from _mappings(v, f"{path}.{k.value}")
