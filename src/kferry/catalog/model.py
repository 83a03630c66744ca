"""Typed view of the catalog data files, checked when loaded."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from kferry.catalog.defaults import (
    CatalogError,
    Component,
    DefaultEntry,
    parse_defaults,
)
from kferry.errors import InputError

_HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def name_matches(pattern: str, name: str) -> bool:
    """Object name match that tolerates kustomize's ``-<10 char hash>`` suffix."""
    return name == pattern or (
        name.startswith(pattern) and _HASH_SUFFIX.fullmatch(name[len(pattern) :]) is not None
    )


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
class Catalog:
    documentation_kinds: frozenset[str]
    skipped_kinds: frozenset[str]
    documentation_keys: frozenset[str]
    optional: tuple[OptionalRule, ...]
    composed: tuple[ComposedRecipe, ...]
    defaults: tuple[DefaultEntry, ...]
    components: tuple[Component, ...] = ()
    files: tuple[str, ...] = ()  # site catalog files read on top of the built-in data

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


def _read(name: str) -> dict[str, Any]:
    text = resources.files("kferry.catalog").joinpath("data", name).read_text("utf-8")
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict):
        raise CatalogError(f"catalog/data/{name}: expected a mapping")
    return data


CATALOG_ENV = "KFERRY_CATALOG"


def catalog_files(given: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Site catalog files: ``KFERRY_CATALOG`` (``os.pathsep``-separated) then ``--catalog``."""
    env = [p for p in os.environ.get(CATALOG_ENV, "").split(os.pathsep) if p]
    return (*env, *given)


def load_catalog(files: tuple[str, ...] = ()) -> Catalog:
    """The built-in catalog, with the site's files on top (each adds or replaces by id).

    A site file that cannot be read or does not follow the schema is an
    :class:`~kferry.errors.InputError` naming the file and the entry.
    """
    base = _builtin()
    if not files:
        return base
    components, defaults = base.components, base.defaults
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise InputError(f"--catalog {path}: {exc.strerror or exc}") from None
        try:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise InputError(f"{path}{line}: not valid YAML") from None
        try:
            components, defaults = parse_defaults(data, path, components, defaults)
        except CatalogError as exc:
            raise InputError(str(exc)) from None
    return dataclasses.replace(base, components=components, defaults=defaults, files=tuple(files))


@cache
def _builtin() -> Catalog:
    """The built-in catalog (read once per process)."""
    disc = _read("discovery.yaml")
    comp = _read("composed.yaml")
    components, defaults = parse_defaults(_read("defaults.yaml"), "catalog/data/defaults.yaml")
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
        defaults=defaults,
        components=components,
    )


@cache
def load_fixes() -> dict[str, dict[str, Any]]:
    """The fix pack's data (``catalog/data/fixes.yaml``), by fix name."""
    fixes: dict[str, dict[str, Any]] = _read("fixes.yaml")["fixes"]
    return fixes
