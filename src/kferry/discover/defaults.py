"""Images controllers pull by compiled-in default (group c), from ``catalog/data/defaults.yaml``.

A catalog component recognises a controller by its container image; its version is the
image's tag, or the release a commit tag stands for. Each default entry picks the rule that
covers that version; a version no rule covers gets the nearest older rule, and an
:class:`~kferry.discover.model.Assumption` that the commands print. The default is left out
only when the manifests override it (the env var on the container, directly or through a
ConfigMap, or the flag in its args/command) *and* that version of the controller reads the
override; where it does not, setting it changes nothing and the finding carries no override,
so rewrite reports the image as needing node mirror configuration.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Literal

import yaml
from packaging.version import Version

from kferry.catalog import Catalog, Choice, Component, DefaultEntry, DefaultOverride
from kferry.catalog.defaults import parse_version
from kferry.discover.heuristics import flag_name
from kferry.discover.model import Assumption, Finding, Location, Override
from kferry.discover.objects import Container, ObjectIndex, containers
from kferry.load.documents import KubeObject, mapping_get, scalar_str, scalar_text
from kferry.name import Reference, try_parse


def _has_flag(container: Container, flag: str) -> bool:
    want = flag.lstrip("-")
    for key in ("command", "args"):
        seq = mapping_get(container.node, key)
        if not isinstance(seq, yaml.SequenceNode):
            continue
        for item in seq.value:
            text = scalar_str(item)
            if text is None:
                continue
            for word in text.split():
                parsed = flag_name(word)
                if parsed is not None and parsed[0] == want:
                    return True
    return False


def _configmap_sets(override: DefaultOverride, namespace: str, index: ObjectIndex) -> bool:
    """A ConfigMap of the controller's namespace sets ``data[key]`` ``.field`` (JSON/YAML)."""
    for cm in index.configmaps_named(override.name):
        if cm.namespace != namespace:
            continue
        text = scalar_text(mapping_get(mapping_get(cm.node, "data"), override.key))
        if text is None:
            continue
        try:
            value = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            continue
        if isinstance(value, dict) and value.get(override.field):
            return True
    return False


def _overridden(override: DefaultOverride, container: Container, index: ObjectIndex) -> bool:
    """The manifests set the override (whether the controller reads it is asked separately)."""
    if override.kind == "arg":
        return _has_flag(container, override.name)
    if override.kind == "configmap":
        return _configmap_sets(override, container.owner.namespace, index)
    return override.name in index.env(container)


def _override(override: DefaultOverride | None, container: Container) -> Override | None:
    """Where the image itself can be given instead of the default (None: nowhere)."""
    if override is None or not override.is_image or override.kind == "configmap":
        return None
    kind: Literal["env", "arg"] = "env" if override.kind == "env" else "arg"
    return Override(kind, override.name, container.node)


def _finding(
    entry: DefaultEntry,
    choice: Choice,
    version: Version | None,
    tag: str | None,
    container: Container,
    index: ObjectIndex,
) -> Finding | None:
    """The default image one entry adds for this controller container (None: no image)."""
    rule = choice.rule
    if rule is None or rule.image is None:
        return None
    # a version the catalog cannot place behaves like the rule assumed for it
    effective = version if version is not None else rule.last_version
    ov = entry.override
    reads = ov is not None and ov.read_by(effective)
    if ov is not None and reads and _overridden(ov, container, index):
        return None
    text = rule.image.replace("{tag}", tag or "")
    default = try_parse(text)
    if default is None:  # a catalog bug; the catalog test catches it
        return None
    obj = container.owner
    location = Location(
        object=obj.ref,
        path=f"{container.path} compiled default: {rule.citation(version)}",
        how="default",
        optional=entry.optional,
        note=entry.note,
        owner=obj,
        assumed=choice.assumed,
        rule_version=rule.last if choice.assumed else None,
    )
    settable = ov is not None and ov.is_image and ov.kind != "configmap"
    return Finding(
        text,
        default,
        location,
        override=_override(ov, container) if reads else None,
        ignored_override=ov.name if ov is not None and settable and not reads else None,
    )


def _controllers(
    catalog: Catalog, index: ObjectIndex, kinds: Collection[str]
) -> Iterator[tuple[KubeObject, Container, Reference, list[tuple[Component, list[DefaultEntry]]]]]:
    """Every container (with a parseable image) of the objects of ``kinds``, with the catalog
    components that recognise it and their default entries: the one walk that
    :func:`compiled_defaults` and :func:`coverage` share."""
    by_component: dict[str, list[DefaultEntry]] = {}
    for entry in catalog.defaults:
        by_component.setdefault(entry.component.id, []).append(entry)
    components = [c for c in catalog.components if c.id in by_component]
    for obj in index.objects:
        if obj.kind not in kinds:
            continue
        for container in containers(obj):
            image = scalar_str(mapping_get(container.node, "image"))
            ref = try_parse(image) if image else None
            if ref is None:
                continue
            matched = [
                (c, by_component[c.id])
                for c in components
                if obj.kind in c.kinds and c.detects(ref.path)
            ]
            yield obj, container, ref, matched


def compiled_defaults(
    catalog: Catalog, index: ObjectIndex
) -> tuple[list[Finding], list[Assumption]]:
    """Default images of every known controller, and the versions no rule covers."""
    findings: list[Finding] = []
    assumptions: list[Assumption] = []
    kinds = {k for c in catalog.components for k in c.kinds}
    for obj, container, ref, matched in _controllers(catalog, index, kinds):
        for component, entries in matched:
            version, placed = component.place(ref.tag)
            added: list[str] = []
            assumed_at: list[str] = []
            any_assumed = False
            for entry in entries:
                choice = entry.choose(version)
                any_assumed = any_assumed or choice.assumed
                if choice.assumed and choice.rule is not None:
                    assumed_at.append(choice.rule.last)
                finding = _finding(entry, choice, version, ref.tag, container, index)
                if finding is None:
                    continue
                findings.append(finding)
                if choice.assumed and finding.reference is not None:
                    added.append(finding.reference.canonical)
            if any_assumed:
                assumptions.append(
                    Assumption(
                        component=component.name,
                        object=obj.ref,
                        seen=ref.tag or (f"@{ref.digest}" if ref.digest else "latest (no tag)"),
                        placed=placed if version is None else "tag",
                        rule_version=max(assumed_at, key=_order) if assumed_at else None,
                        images=tuple(dict.fromkeys(added)),
                    )
                )
    return findings, assumptions


def _order(tag: str) -> Version:
    return parse_version(tag) or Version("0")


@dataclass(frozen=True, slots=True)
class Coverage:
    """How the catalog covers one controller container of a render.

    ``status``: ``exact`` (every default entry has a rule for the version), ``assumed`` (some
    entry falls back to the nearest older or newest rule), ``none`` (no rule older than the
    version: nothing is assumed), ``unknown`` (a workload no catalog component recognises).
    """

    object: str
    container: str
    image: str
    component: str | None
    version: str | None
    status: str
    rules: tuple[str, ...] = ()  # "entry-id: span" of the rule used per entry


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def coverage(catalog: Catalog, index: ObjectIndex) -> list[Coverage]:
    """Every workload container of a render, and how the catalog covers it."""
    out: list[Coverage] = []
    for obj, container, ref, matched in _controllers(catalog, index, WORKLOAD_KINDS):
        for component, entries in matched:
            version, _ = component.place(ref.tag)
            statuses = []
            rules = []
            for entry in entries:
                choice = entry.choose(version)
                if choice.rule is None:
                    statuses.append("none")
                    rules.append(f"{entry.id}: no rule")
                    continue
                statuses.append("assumed" if choice.assumed else "exact")
                rules.append(f"{entry.id}: {choice.rule.span}")
            status = (
                "none"
                if all(s == "none" for s in statuses)
                else "exact"
                if all(s == "exact" for s in statuses)
                else "assumed"
            )
            out.append(
                Coverage(
                    object=obj.ref,
                    container=container.name,
                    image=ref.canonical,
                    component=component.name,
                    version=str(version) if version is not None else None,
                    status=status,
                    rules=tuple(rules),
                )
            )
        if not matched:
            out.append(Coverage(obj.ref, container.name, ref.canonical, None, None, "unknown"))
    return out
