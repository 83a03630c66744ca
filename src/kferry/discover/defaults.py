"""Images controllers pull by compiled-in default (group c), from ``catalog/data/defaults.yaml``.

A catalog entry recognises a controller by its container image and picks a rule by that
image's tag. The default is reported only when the manifests do not override it (the env var
on the container, directly or through a ConfigMap, or the flag in its args/command).
"""

from __future__ import annotations

import yaml

from kferry.catalog import Catalog, DefaultEntry
from kferry.discover.heuristics import flag_name
from kferry.discover.model import Finding, Location, Override
from kferry.discover.objects import Container, ObjectIndex, containers
from kferry.load.documents import mapping_get, scalar_str
from kferry.name import try_parse


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


def _overridden(entry: DefaultEntry, container: Container, index: ObjectIndex) -> bool:
    if entry.override_arg and _has_flag(container, entry.override_arg):
        return True
    return bool(entry.override_env and entry.override_env in index.env(container))


def _override(entry: DefaultEntry, container: Container) -> Override | None:
    """Where the image itself can be given instead of the default (None: nowhere)."""
    if not entry.override_is_image:
        return None
    if entry.override_env:
        return Override("env", entry.override_env, container.node)
    if entry.override_arg:
        return Override("arg", entry.override_arg, container.node)
    return None


def compiled_defaults(catalog: Catalog, index: ObjectIndex) -> list[Finding]:
    findings: list[Finding] = []
    kinds = {k for entry in catalog.defaults for k in entry.kinds}
    for obj in index.objects:
        if obj.kind not in kinds:
            continue
        for container in containers(obj):
            image = scalar_str(mapping_get(container.node, "image"))
            ref = try_parse(image) if image else None
            if ref is None:
                continue
            for entry in catalog.defaults:
                if obj.kind not in entry.kinds or not entry.detects(ref.path):
                    continue
                rule = entry.rule_for(ref.tag)
                if rule is None or _overridden(entry, container, index):
                    continue
                text = rule.image.replace("{tag}", ref.tag or "")
                default = try_parse(text)
                if default is None:  # a catalog bug; the catalog test catches it
                    continue
                location = Location(
                    object=obj.ref,
                    path=f"{container.path} compiled default: {rule.source}",
                    how="default",
                    optional=entry.optional,
                    note=entry.note,
                    owner=obj,
                )
                findings.append(
                    Finding(text, default, location, override=_override(entry, container))
                )
    return findings
