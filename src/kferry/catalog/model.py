"""Typed view of the catalog data files, checked when loaded."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

_HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


class CatalogError(ValueError):
    """A catalog file that does not follow its schema (a bug in kferry's data)."""


def name_matches(pattern: str, name: str) -> bool:
    """Object name match that tolerates kustomize's ``-<10 char hash>`` suffix."""
    return name == pattern or (
        name.startswith(pattern) and _HASH_SUFFIX.fullmatch(name[len(pattern) :]) is not None
    )


def parse_version(tag: str) -> Version | None:
    """``v1.9.2`` / ``2.0.0-alpha.5`` -> Version; commit tags (``v1-04f9f13``) -> None."""
    try:
        return Version(tag[1:] if tag[:1] in "vV" else tag)
    except InvalidVersion:
        return None


@dataclass(frozen=True, slots=True)
class OptionalRule:
    kind: str
    name: str
    path: str
    reason: str
    source: str

    def matches(self, kind: str, name: str, path: str) -> bool:
        return (
            kind == self.kind
            and name_matches(self.name, name)
            and fnmatch.fnmatchcase(path, self.path)
        )


@dataclass(frozen=True, slots=True)
class ComposedRecipe:
    id: str
    style: str
    kind: str
    name: str
    keys: tuple[str, ...]
    format: str
    note: str
    source: str
    hub: tuple[str, ...] = ()
    image: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()
    variant: tuple[str, ...] = ()
    image_key: str = "image"
    version_keys: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    tag_env: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DefaultRule:
    image: str
    source: str
    versions: SpecifierSet | None = None
    tags: tuple[str, ...] = ()

    def applies(self, tag: str | None) -> bool:
        if tag is None:
            return False
        if tag in self.tags:
            return True
        if self.versions is None:
            return False
        version = parse_version(tag)
        return version is not None and self.versions.contains(version, prereleases=True)


@dataclass(frozen=True, slots=True)
class DefaultEntry:
    id: str
    component: str
    kinds: tuple[str, ...]
    images: tuple[str, ...]
    override_env: str | None
    override_arg: str | None
    override_is_image: bool
    optional: str | None
    note: str
    rules: tuple[DefaultRule, ...]

    def detects(self, repository_path: str) -> bool:
        return any(
            repository_path == suffix or repository_path.endswith("/" + suffix)
            for suffix in self.images
        )

    def rule_for(self, tag: str | None) -> DefaultRule | None:
        return next((r for r in self.rules if r.applies(tag)), None)


@dataclass(frozen=True, slots=True)
class Catalog:
    documentation_kinds: frozenset[str]
    skipped_kinds: frozenset[str]
    documentation_keys: frozenset[str]
    optional: tuple[OptionalRule, ...]
    composed: tuple[ComposedRecipe, ...]
    defaults: tuple[DefaultEntry, ...]

    def optional_reason(self, kind: str, name: str, path: str) -> str | None:
        for rule in self.optional:
            if rule.matches(kind, name, path):
                return rule.reason
        return None


def _req(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise CatalogError(f"{where}: missing {key!r}")
    return entry[key]


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _composed(entry: dict[str, Any], where: str) -> ComposedRecipe:
    style = _req(entry, "style", where)
    if style not in ("hub-image-tag", "image-version", "code-env-default"):
        raise CatalogError(f"{where}: unknown style {style!r}")
    pattern = entry.get("pattern")
    return ComposedRecipe(
        id=_req(entry, "id", where),
        style=style,
        kind=_req(entry, "kind", where),
        name=_req(entry, "name", where),
        keys=_tuple(_req(entry, "keys", where)),
        format=entry.get("format", "text"),
        note=entry.get("note", ""),
        source=_req(entry, "source", where),
        hub=_tuple(entry.get("hub")),
        image=_tuple(entry.get("image")),
        tag=_tuple(entry.get("tag")),
        variant=_tuple(entry.get("variant")),
        image_key=entry.get("image_key", "image"),
        version_keys=_tuple(entry.get("version_keys")),
        pattern=re.compile(pattern) if pattern else None,
        tag_env=_tuple(entry.get("tag_env")),
    )


def _default(entry: dict[str, Any], where: str) -> DefaultEntry:
    detect = _req(entry, "detect", where)
    override = entry.get("override") or {}
    rules = []
    for i, rule in enumerate(_req(entry, "rules", where)):
        rwhere = f"{where} rules[{i}]"
        spec = rule.get("versions")
        try:
            versions = SpecifierSet(str(spec)) if spec else None
        except InvalidSpecifier as exc:
            raise CatalogError(f"{rwhere}: {exc}") from None
        if versions is None and not rule.get("tags"):
            raise CatalogError(f"{rwhere}: needs 'versions' or 'tags'")
        rules.append(
            DefaultRule(
                image=_req(rule, "image", rwhere),
                source=_req(rule, "source", rwhere),
                versions=versions,
                tags=_tuple(rule.get("tags")),
            )
        )
    return DefaultEntry(
        id=_req(entry, "id", where),
        component=entry.get("component", ""),
        kinds=_tuple(detect.get("kinds") or ["Deployment", "StatefulSet", "DaemonSet"]),
        images=_tuple(_req(detect, "images", where + " detect")),
        override_env=override.get("env"),
        override_arg=override.get("arg"),
        override_is_image=override.get("value", "image") == "image",
        optional=entry.get("optional"),
        note=entry.get("note", ""),
        rules=tuple(rules),
    )


def _read(name: str) -> dict[str, Any]:
    text = resources.files("kferry.catalog").joinpath("data", name).read_text("utf-8")
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict):
        raise CatalogError(f"catalog/data/{name}: expected a mapping")
    return data


@cache
def load_catalog() -> Catalog:
    """The built-in catalog (read once per process)."""
    disc = _read("discovery.yaml")
    comp = _read("composed.yaml")
    dflt = _read("defaults.yaml")
    optional = tuple(
        OptionalRule(
            kind=_req(o, "kind", f"discovery.yaml optional[{i}]"),
            name=_req(o, "name", f"discovery.yaml optional[{i}]"),
            path=_req(o, "path", f"discovery.yaml optional[{i}]"),
            reason=_req(o, "reason", f"discovery.yaml optional[{i}]"),
            source=_req(o, "source", f"discovery.yaml optional[{i}]"),
        )
        for i, o in enumerate(disc.get("optional") or [])
    )
    return Catalog(
        documentation_kinds=frozenset(d["kind"] for d in disc.get("documentation_kinds") or []),
        skipped_kinds=frozenset(d["kind"] for d in disc.get("skipped_kinds") or []),
        documentation_keys=frozenset(d["key"] for d in disc.get("documentation_keys") or []),
        optional=optional,
        composed=tuple(
            _composed(e, f"composed.yaml composed[{i}]")
            for i, e in enumerate(comp.get("composed") or [])
        ),
        defaults=tuple(
            _default(e, f"defaults.yaml defaults[{i}]")
            for i, e in enumerate(dflt.get("defaults") or [])
        ),
    )


@cache
def load_fixes() -> dict[str, dict[str, Any]]:
    """The fix pack's data (``catalog/data/fixes.yaml``), by fix name."""
    fixes: dict[str, dict[str, Any]] = _read("fixes.yaml")["fixes"]
    return fixes
