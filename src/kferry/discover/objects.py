"""Cross-object lookups discovery needs: ConfigMaps by name, containers, their environment.

A controller's environment decides whether a compiled-in default is used (``TENSORBOARD_IMAGE``
set through ``envFrom`` a ConfigMap) and what a composed image's tag is (``KFP_VERSION`` from
``pipeline-install-config``); both need env values resolved across objects of the render.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import yaml

from kferry.catalog.model import name_matches
from kferry.discover.paths import Token, format_path, item_token, key_token
from kferry.load.documents import KubeObject, mapping_get, scalar_str, scalar_text

CONTAINER_LIST_KEYS = frozenset({"containers", "initContainers", "ephemeralContainers"})


@dataclass(frozen=True, slots=True)
class EnvValue:
    """One environment variable: ``value`` is ``None`` when set from a Secret or field."""

    value: str | None
    node: yaml.ScalarNode | None
    origin: str  # "env" or "ConfigMap/ns/name data.key"


@dataclass(frozen=True, slots=True)
class Container:
    """A container found in an object: ``path`` is its path tokens' printed form."""

    owner: KubeObject
    node: yaml.MappingNode
    name: str
    path: str


class ObjectIndex:
    """The objects of a render, indexed for the lookups discovery makes."""

    def __init__(self, objects: Iterable[KubeObject]) -> None:
        self.objects = list(objects)
        self._configmaps: dict[tuple[str, str], KubeObject] = {}
        for obj in self.objects:
            if obj.kind == "ConfigMap":
                self._configmaps[(obj.namespace, obj.name)] = obj

    def configmap(self, namespace: str, name: str) -> KubeObject | None:
        return self._configmaps.get((namespace, name))

    def configmaps_named(self, pattern: str) -> Iterator[KubeObject]:
        """ConfigMaps whose name is ``pattern`` (kustomize hash suffix allowed)."""
        for (_, name), obj in self._configmaps.items():
            if name_matches(pattern, name):
                yield obj

    def mounting(self, configmap: KubeObject) -> Iterator[KubeObject]:
        """Workloads in the ConfigMap's namespace that mount it as a volume."""
        for obj in self.objects:
            if obj.namespace != configmap.namespace or obj.kind == "ConfigMap":
                continue
            for volumes in _find_key(obj.node, "volumes"):
                if not isinstance(volumes, yaml.SequenceNode):
                    continue
                for vol in volumes.value:
                    ref = scalar_text(mapping_get(mapping_get(vol, "configMap"), "name"))
                    if ref == configmap.name:
                        yield obj
                        break

    def env(self, container: Container) -> dict[str, EnvValue]:
        """The container's environment as far as the render tells it."""
        out: dict[str, EnvValue] = {}
        ns = container.owner.namespace
        env_from = mapping_get(container.node, "envFrom")
        if isinstance(env_from, yaml.SequenceNode):
            for src in env_from.value:
                prefix = scalar_text(mapping_get(src, "prefix")) or ""
                cm_name = scalar_text(mapping_get(mapping_get(src, "configMapRef"), "name"))
                cm = self.configmap(ns, cm_name) if cm_name else None
                data = mapping_get(cm.node, "data") if cm is not None else None
                if cm is not None and isinstance(data, yaml.MappingNode):
                    for k, v in data.value:
                        origin = f"{cm.ref} data.{k.value}"
                        out[prefix + k.value] = EnvValue(scalar_text(v), _scalar(v), origin)
                secret = scalar_text(mapping_get(mapping_get(src, "secretRef"), "name"))
                if secret:
                    continue  # names unknown without reading the Secret; never read
        env = mapping_get(container.node, "env")
        if isinstance(env, yaml.SequenceNode):
            for item in env.value:
                name = scalar_text(mapping_get(item, "name"))
                if not name:
                    continue
                value_node = mapping_get(item, "value")
                if value_node is not None:
                    out[name] = EnvValue(scalar_text(value_node), _scalar(value_node), "env")
                    continue
                ref = mapping_get(mapping_get(item, "valueFrom"), "configMapKeyRef")
                if ref is not None:
                    cm_name = scalar_text(mapping_get(ref, "name")) or ""
                    key = scalar_text(mapping_get(ref, "key")) or ""
                    cm = self.configmap(ns, cm_name)
                    node = mapping_get(mapping_get(cm.node, "data"), key) if cm else None
                    origin = f"ConfigMap/{ns}/{cm_name} data.{key}"
                    out[name] = EnvValue(scalar_text(node), _scalar(node), origin)
                else:
                    out[name] = EnvValue(None, None, "env")
        return out


def _scalar(node: yaml.Node | None) -> yaml.ScalarNode | None:
    return node if isinstance(node, yaml.ScalarNode) else None


def _find_key(node: yaml.Node, key: str) -> Iterator[yaml.Node]:
    """Every value under ``key`` anywhere below ``node``."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, yaml.MappingNode):
            for k, v in cur.value:
                if k.value == key:
                    yield v
                elif not isinstance(v, yaml.ScalarNode):
                    stack.append(v)
        elif isinstance(cur, yaml.SequenceNode):
            stack.extend(n for n in cur.value if not isinstance(n, yaml.ScalarNode))


def containers(obj: KubeObject) -> Iterator[Container]:
    """Every container of an object, wherever its pod spec lives (workloads, Jobs, CRs)."""
    yield from _containers(obj, obj.node, [])


def _containers(obj: KubeObject, node: yaml.Node, path: list[Token]) -> Iterator[Container]:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            if key in CONTAINER_LIST_KEYS and isinstance(v, yaml.SequenceNode):
                for i, item in enumerate(v.value):
                    if isinstance(item, yaml.MappingNode):
                        name = scalar_str(mapping_get(item, "name")) or ""
                        where = format_path([*path, key_token(key), item_token(i, item)])
                        yield Container(obj, item, name, where)
            elif not isinstance(v, yaml.ScalarNode) and key not in ("metadata", "status"):
                yield from _containers(obj, v, [*path, key_token(key)])
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if not isinstance(item, yaml.ScalarNode):
                yield from _containers(obj, item, [*path, item_token(i, item)])
