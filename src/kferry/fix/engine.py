"""Applying the fixes of ``catalog/data/fixes.yaml`` to the loaded objects, as text edits."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from kferry.catalog import load_fixes
from kferry.catalog.model import name_matches
from kferry.discover.model import Finding, Part
from kferry.discover.objects import containers
from kferry.discover.paths import node_at
from kferry.errors import InputError
from kferry.load.documents import KubeObject, compose_all, mapping_get, scalar_text
from kferry.podspec import pod_spec_nodes
from kferry.rewrite.edits import Edit, Locator
from kferry.rewrite.insert import (
    add_first_key,
    add_key,
    append_items,
    quoted,
    remove_item,
    replace_scalar,
    set_envs,
)


def _catalog() -> dict[str, dict[str, Any]]:
    return load_fixes()


FIX_NAMES = tuple(_catalog())


@dataclass(frozen=True)
class FixChange:
    fix: str
    object: str
    what: str


@dataclass
class FixResult:
    edits: dict[str, list[Edit]] = field(default_factory=lambda: defaultdict(list))
    changes: list[FixChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, obj: KubeObject, fix: str, edit: Edit | None, what: str) -> None:
        if edit is None:
            self.notes.append(f"{fix}: {obj.ref}: could not {what} (unusual layout; do it by hand)")
            return
        self.edits[obj.document.source.name].append(edit)
        self.changes.append(FixChange(fix, obj.ref, what))


def enabled_fixes(on: Sequence[str], off: Sequence[str], knative: bool) -> dict[str, str | None]:
    """Which fixes run: defaults, plus ``--fix NAME[=VALUE]``, minus ``--no-fix NAME``."""
    catalog = _catalog()
    chosen: dict[str, str | None] = {}
    for name, spec in catalog.items():
        if spec.get("default") and not spec.get("takes_value"):
            if not knative and name in FIXES and "knative" in FIXES[name].needs:
                continue
            chosen[name] = None
    for item in on:
        # "pull-secret=NAME", "pull-secret:NAME" or "pull-secret NAME" (one quoted argument)
        name = re.split(r"[=:\s]", item, maxsplit=1)[0]
        value = item[len(name) + 1 :].strip()
        if name not in catalog:
            raise InputError(f"--fix {name}: unknown fix (known: {', '.join(catalog)})")
        if catalog[name].get("takes_value") and not value:
            raise InputError(f"--fix {name}: needs a value, as in --fix {name}=NAME")
        chosen[name] = value or None
    for name in off:
        if name not in catalog:
            raise InputError(f"--no-fix {name}: unknown fix (known: {', '.join(catalog)})")
        chosen.pop(name, None)
    return chosen


@dataclass(frozen=True)
class FixInput:
    """What a fix may read: the loaded objects, their documents' locators, the private
    registry (``--to``), the discovered findings, and the fix's own ``--fix NAME=VALUE``."""

    objects: Sequence[KubeObject]
    locators: dict[str, Locator]
    registry: str | None
    findings: Sequence[Finding]
    value: str | None = None


class Fix(Protocol):
    """One fix: its catalog name (its facts and citations stay in ``fixes.yaml``), what it
    needs before it can run, and how it edits."""

    @property
    def name(self) -> str: ...

    @property
    def needs(self) -> frozenset[str]: ...

    def ready(self, given: FixInput) -> bool:
        """Whether what it needs is there (otherwise it is skipped, as before)."""
        ...

    def apply(self, spec: dict[str, Any], given: FixInput, result: FixResult) -> None: ...


@dataclass(frozen=True)
class Handler:
    """A :class:`Fix` from a function; ``needs`` names inputs that must be present:
    ``registry`` (``--to``), ``value`` (``--fix NAME=VALUE``), ``knative`` (on by default
    only for a render with Knative)."""

    name: str
    run: Callable[[dict[str, Any], FixInput, FixResult], None]
    needs: frozenset[str] = frozenset()

    def ready(self, given: FixInput) -> bool:
        return ("registry" not in self.needs or bool(given.registry)) and (
            "value" not in self.needs or bool(given.value)
        )

    def apply(self, spec: dict[str, Any], given: FixInput, result: FixResult) -> None:
        self.run(spec, given, result)


def apply_fixes(
    chosen: dict[str, str | None],
    objects: Sequence[KubeObject],
    locators: dict[str, Locator],
    registry: str | None,
    findings: Sequence[Finding],
) -> FixResult:
    result = FixResult()
    catalog = _catalog()
    for name, value in chosen.items():
        handler = FIXES.get(name)
        given = FixInput(objects, locators, registry, findings, value)
        if handler is not None and handler.ready(given):
            handler.apply(catalog[name], given, result)
    return result


def _locator(obj: KubeObject, locators: dict[str, Locator]) -> Locator:
    return locators[obj.document.source.name]


def _env_item(container: yaml.MappingNode, name: str) -> yaml.MappingNode | None:
    env = mapping_get(container, "env")
    if isinstance(env, yaml.SequenceNode):
        for item in env.value:
            if scalar_text(mapping_get(item, "name")) == name:
                return item  # type: ignore[no-any-return]
    return None


def _insecure_cookies(
    spec: dict[str, Any],
    objects: Sequence[KubeObject],
    locators: dict[str, Locator],
    result: FixResult,
) -> None:
    env, value = spec["env"], str(spec["value"])
    for obj in objects:
        if obj.kind not in ("Deployment", "StatefulSet"):
            continue
        wanted = {c for d, c in spec["workloads"] if name_matches(d, obj.name)}
        if not wanted:
            continue
        loc = _locator(obj, locators)
        for c in containers(obj):
            if c.name not in wanted:
                continue
            item = _env_item(c.node, env)
            if item is None:
                edit = set_envs(loc.index, c.node, [(env, value)], "insecure-cookies")
                result.add(obj, "insecure-cookies", edit, f"set {env}={value} on {c.name}")
                continue
            current = mapping_get(item, "value")
            if isinstance(current, yaml.ScalarNode) and current.value != value:
                edit = replace_scalar(loc.index, current, quoted(value), "insecure-cookies")
                result.add(obj, "insecure-cookies", edit, f"set {env}={value} on {c.name}")


def _embedded_node(outer: yaml.ScalarNode, path: str) -> tuple[Part, yaml.ScalarNode] | None:
    try:
        roots = [n for n in compose_all(outer.value) if n is not None]
    except yaml.YAMLError:
        return None
    for root in roots:
        node = node_at(root, path)
        if isinstance(node, yaml.ScalarNode):
            return Part(node, (("json", outer),)), node
    return None


def _first_party_jwt(
    spec: dict[str, Any],
    objects: Sequence[KubeObject],
    locators: dict[str, Locator],
    result: FixResult,
) -> None:
    old, new = spec["from"], spec["to"]
    fix = "istio-first-party-jwt"
    for obj in objects:
        loc = _locator(obj, locators)
        if obj.kind == "ConfigMap":
            data = mapping_get(obj.node, "data")
            for cm, key in spec["values_keys"]:
                value = mapping_get(data, key)
                if not name_matches(cm, obj.name) or not isinstance(value, yaml.ScalarNode):
                    continue
                found = _embedded_node(value, ".global.jwtPolicy")
                if found is None or found[1].value != old:
                    continue
                rng = loc.locate(found[0])
                edit = Edit(rng[0], rng[1], new, fix) if rng else None
                result.add(obj, fix, edit, f"{key}: global.jwtPolicy {old} -> {new}")
            continue
        for c in containers(obj):
            item = _env_item(c.node, spec["env"])
            current = mapping_get(item, "value") if item is not None else None
            if isinstance(current, yaml.ScalarNode) and current.value == old:
                edit = replace_scalar(loc.index, current, new, fix)
                result.add(obj, fix, edit, f"{spec['env']} {old} -> {new} on {c.name}")
            mounts = mapping_get(c.node, "volumeMounts")
            if isinstance(mounts, yaml.SequenceNode):
                for m in mounts.value:
                    if scalar_text(mapping_get(m, "name")) == spec["token_volume"]:
                        edit = remove_item(loc.index, mounts, m, fix)
                        result.add(
                            obj, fix, edit, f"removed the {spec['token_volume']} mount of {c.name}"
                        )
        for volumes in _pod_volumes(obj.node):
            for v in volumes.value:
                if scalar_text(mapping_get(v, "name")) == spec["token_volume"]:
                    edit = remove_item(loc.index, volumes, v, fix)
                    result.add(
                        obj, fix, edit, f"removed the projected {spec['token_volume']} volume"
                    )


def _pod_volumes(node: yaml.Node) -> list[yaml.SequenceNode]:
    """The ``volumes`` lists of the pod specs below ``node``."""
    return [
        v
        for pod in pod_spec_nodes(node)
        if isinstance(v := mapping_get(pod, "volumes"), yaml.SequenceNode)
    ]


def _knative_skip(
    spec: dict[str, Any],
    objects: Sequence[KubeObject],
    locators: dict[str, Locator],
    registry: str,
    result: FixResult,
) -> None:
    fix = "knative-skip-tag-resolution"
    namespace, name = spec["configmap"]
    for obj in objects:
        if obj.kind != "ConfigMap" or obj.namespace != namespace or obj.name != name:
            continue
        loc = _locator(obj, locators)
        data = mapping_get(obj.node, "data")
        if not isinstance(data, yaml.MappingNode):
            continue
        key = _knative_key(spec["keys"], data)
        current = mapping_get(data, key)
        edit: Edit | None
        if isinstance(current, yaml.ScalarNode):
            hosts = [h.strip() for h in current.value.split(",") if h.strip()]
            if registry in hosts:
                continue
            edit = replace_scalar(loc.index, current, quoted(",".join([*hosts, registry])), fix)
        else:
            anchor = next(
                (
                    k.value
                    for k, v in data.value
                    if isinstance(v, yaml.ScalarNode)
                    and "\n" not in v.value
                    and not k.value.startswith("_")
                ),
                None,
            )
            line = f"{key}: {quoted(spec['default_value'] + ',' + registry)}"
            edit = add_key(loc.index, data, anchor, line, fix) if anchor else None
        result.add(obj, fix, edit, f"{key} now includes {registry}")


def _knative_key(keys: list[str], data: yaml.MappingNode) -> str:
    """The key this Knative version reads: the one its own ``_example`` block documents."""
    for k in keys:
        if mapping_get(data, k) is not None:
            return k
    example = scalar_text(mapping_get(data, "_example")) or ""
    for k in keys:
        if re.search(rf"(?m)^\s*{re.escape(k)}\s*:", example):
            return k
    camel = any(
        k.value[:1].islower()
        and "-" not in k.value
        and k.value != "_example"
        and any(ch.isupper() for ch in k.value)
        for k, _ in data.value
    )
    return keys[1] if camel else keys[0]


def _full_host(spec: dict[str, Any], findings: Sequence[Finding], result: FixResult) -> None:
    kinds, configmaps = set(spec["kinds"]), list(spec["configmaps"])
    n = 0
    for f in findings:
        owner = f.location.owner
        if owner is None:
            continue
        if owner.kind in kinds or (
            owner.kind == "ConfigMap" and any(name_matches(c, owner.name) for c in configmaps)
        ):
            n += 1
    if n:
        result.notes.append(
            f"serving-runtime-full-host: {n} model-server image references are "
            "written with their full registry host by the rewrite"
        )


def _pull_secret(
    secret: str,
    objects: Sequence[KubeObject],
    locators: dict[str, Locator],
    findings: Sequence[Finding],
    result: FixResult,
) -> None:
    fix = "pull-secret"
    item = json.dumps({"name": secret}).replace('"name"', "name")
    pulling = {id(f.location.owner) for f in findings if f.location.how == "field"}
    namespaces: set[str] = set()
    for obj in objects:
        loc = _locator(obj, locators)
        if obj.kind == "ServiceAccount":
            needed, edit = _add_secret(loc, obj.node, item, secret, fix)
            if needed:
                result.add(obj, fix, edit, f"imagePullSecrets += {secret}")
                namespaces.add(obj.namespace)
            continue
        if id(obj) not in pulling:
            continue
        for pod in pod_spec_nodes(obj.node):
            needed, edit = _add_secret(loc, pod, item, secret, fix)
            if needed:
                result.add(obj, fix, edit, f"imagePullSecrets += {secret} in the pod template")
                namespaces.add(obj.namespace)
    if namespaces:
        result.notes.append(
            f"pull-secret: create Secret {secret} (type kubernetes.io/dockerconfigjson) in "
            f"namespaces {', '.join(sorted(n for n in namespaces if n))}; user namespaces get "
            f"it from `kferry users add --pull-secret {secret}`"
        )


def _add_secret(
    loc: Locator, mapping: yaml.MappingNode, item: str, secret: str, fix: str
) -> tuple[bool, Edit | None]:
    """(needed, edit): not needed when the secret is already listed."""
    existing = mapping_get(mapping, "imagePullSecrets")
    if isinstance(existing, yaml.SequenceNode):
        names = {scalar_text(mapping_get(i, "name")) for i in existing.value}
        if secret in names:
            return False, None
        return True, append_items(loc.index, existing, [item], fix)
    return True, add_first_key(loc.index, mapping, f"imagePullSecrets: [{item}]", fix)


# The fixes kferry knows how to apply, by their catalog name (catalog/data/fixes.yaml); a
# catalog entry without a handler here is accepted by --fix and changes nothing.
FIXES: dict[str, Fix] = {
    h.name: h
    for h in (
        Handler(
            "insecure-cookies",
            lambda spec, g, r: _insecure_cookies(spec, g.objects, g.locators, r),
        ),
        Handler(
            "istio-first-party-jwt",
            lambda spec, g, r: _first_party_jwt(spec, g.objects, g.locators, r),
        ),
        Handler(
            "knative-skip-tag-resolution",
            lambda spec, g, r: _knative_skip(spec, g.objects, g.locators, g.registry or "", r),
            frozenset({"registry", "knative"}),
        ),
        Handler(
            "serving-runtime-full-host",
            lambda spec, g, r: _full_host(spec, g.findings, r),
        ),
        Handler(
            "pull-secret",
            lambda spec, g, r: _pull_secret(g.value or "", g.objects, g.locators, g.findings, r),
            frozenset({"value"}),
        ),
    )
}
