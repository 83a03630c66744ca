"""Compiled-in defaults as typed, checked data: components, their release lines, rules.

A component (a controller) is recognised by its container image; its version is the image's
tag read as a release, or, for commit-tagged images, the release that upstream history
places that commit on (``commits``). A rule covers a version range ``from``..``to``
(inclusive, PEP 440 order, pre-releases included) and cites every upstream tag in it at which
its image was read. A version no rule covers is *assumed* to behave like the nearest older
rule (the newest one when the version cannot be placed at all), and discovery says so.

The same schema serves kferry's own data (``catalog/data/defaults.yaml``) and a site's
``--catalog FILE``; :func:`parse_defaults` checks either and names the file and entry of
the first thing wrong.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Literal

from packaging.version import InvalidVersion, Version

from kferry.name import try_parse

_COMMIT_TAG = re.compile(r"^(?:v\d+-)?([0-9a-f]{7,40})$")
_HEX = re.compile(r"^[0-9a-f]{7,40}$")


class CatalogError(ValueError):
    """A catalog file that does not follow its schema (names the file and entry)."""


def parse_version(tag: str) -> Version | None:
    """``v1.9.2`` / ``2.0.0-alpha.5`` -> Version; commit tags (``v1-04f9f13``) -> None."""
    try:
        return Version(tag[1:] if tag[:1] in "vV" else tag)
    except InvalidVersion:
        return None


@dataclass(frozen=True, slots=True)
class CommitRelease:
    """A commit-tagged image placed on its component's release line."""

    commit: str
    release: str
    version: Version
    source: str


@dataclass(frozen=True, slots=True)
class Component:
    id: str
    name: str
    kinds: tuple[str, ...]
    images: tuple[str, ...]
    commits: tuple[CommitRelease, ...] = ()
    origin: str = "built-in"

    def detects(self, repository_path: str) -> bool:
        return any(
            repository_path == suffix or repository_path.endswith("/" + suffix)
            for suffix in self.images
        )

    def place(self, tag: str | None) -> tuple[Version | None, str]:
        """The release a controller image's tag stands for, and how it was found.

        ``how`` is ``tag`` (the tag is a version), ``commit`` (a known commit), or
        ``unplaced`` (a commit, ``latest``, a digest: not on the release line).
        """
        if not tag:
            return None, "unplaced"
        m = _COMMIT_TAG.match(tag)
        if m is not None:
            sha = m.group(1)
            for c in self.commits:
                if c.commit.startswith(sha):
                    return c.version, "commit"
            if not sha.isdigit():
                return None, "unplaced"
        version = parse_version(tag)
        return (version, "tag") if version is not None else (None, "unplaced")


@dataclass(frozen=True, slots=True)
class DefaultRule:
    first: str
    last: str
    first_version: Version
    last_version: Version
    image: str | None  # None: this range pulls no compiled-in default
    repo: str
    what: str
    at: tuple[tuple[str, str], ...] = ()  # (upstream tag, path:line) read in this range
    source: str = ""  # a site rule's free-form citation (instead of repo + at)

    def covers(self, version: Version) -> bool:
        return self.first_version <= version <= self.last_version

    @property
    def span(self) -> str:
        return self.first if self.first == self.last else f"{self.first} to {self.last}"

    def citation(self, version: Version | None = None) -> str:
        """``owner/repo@tag path:line what`` for the tag read nearest ``version``."""
        if self.source:
            return self.source
        if not self.at:
            return f"{self.repo}@{self.span} {self.what}".strip()
        tag, where = self.at[-1]
        if version is not None:
            for t, w in self.at:
                v = parse_version(t)
                if v is not None and v <= version:
                    tag, where = t, w
        return f"{self.repo}@{tag} {where} {self.what}".strip()


@dataclass(frozen=True, slots=True)
class DefaultOverride:
    """How manifests replace a default, and the versions whose controller reads it.

    ``env``/``arg``: on the controller container (rewrite can set them when ``is_image``);
    ``configmap``: a field of a JSON/YAML value in a ConfigMap of the controller's namespace
    (``name`` data[``key``] ``.field``), which rewrite does not create.
    """

    kind: Literal["env", "arg", "configmap"]
    name: str
    is_image: bool
    first: Version | None
    last: Version | None
    source: str
    key: str = ""
    field: str = ""

    def read_by(self, version: Version | None) -> bool:
        if version is None:
            return self.first is None
        if self.first is not None and version < self.first:
            return False
        return self.last is None or version <= self.last


@dataclass(frozen=True, slots=True)
class Choice:
    """The rule that applies to a version; ``assumed`` when no rule covers it."""

    rule: DefaultRule | None
    assumed: bool
    why: str = ""  # for an assumption: "nearest older", "newest", "older than every rule"


@dataclass(frozen=True, slots=True)
class DefaultEntry:
    id: str
    component: Component
    override: DefaultOverride | None
    optional: str | None
    note: str
    rules: tuple[DefaultRule, ...]
    origin: str = "built-in"

    def choose(self, version: Version | None) -> Choice:
        if version is None:
            return Choice(max(self.rules, key=lambda r: r.last_version), True, "newest")
        for rule in self.rules:
            if rule.covers(version):
                return Choice(rule, False)
        older = [r for r in self.rules if r.last_version < version]
        if not older:
            return Choice(None, True, "older than every rule")
        return Choice(max(older, key=lambda r: r.last_version), True, "nearest older")


def _req(entry: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected a mapping")
    if key not in entry or entry[key] in (None, ""):
        raise CatalogError(f"{where}: missing {key!r}")
    return entry[key]


def _str(entry: dict[str, Any], key: str, where: str) -> str:
    value = _req(entry, key, where)
    if not isinstance(value, str | int | float):
        raise CatalogError(f"{where}: {key!r} must be a string")
    return str(value)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where}: expected a list of strings")
    return tuple(value)


def _version(text: Any, where: str) -> Version:
    version = parse_version(str(text)) if text is not None else None
    if version is None:
        raise CatalogError(f"{where}: {text!r} is not a version")
    return version


def _component(entry: Any, where: str, origin: str) -> Component:
    detect = _req(entry, "detect", where)
    images = _strings(_req(detect, "images", where + " detect"), where + " detect.images")
    kinds = _strings(
        detect.get("kinds") or ["Deployment", "StatefulSet", "DaemonSet"], where + " detect.kinds"
    )
    commits = []
    for i, c in enumerate(entry.get("commits") or []):
        cwhere = f"{where} commits[{i}]"
        sha = _str(c, "commit", cwhere).lower()
        if not _HEX.match(sha):
            raise CatalogError(f"{cwhere}: commit {sha!r} is not 7 to 40 hex digits")
        release = _str(c, "release", cwhere)
        commits.append(
            CommitRelease(sha, release, _version(release, cwhere), _str(c, "source", cwhere))
        )
    return Component(
        id=_str(entry, "id", where),
        name=str(entry.get("name") or entry["id"]),
        kinds=kinds,
        images=images,
        commits=tuple(commits),
        origin=origin,
    )


def _rule(entry: Any, where: str) -> DefaultRule:
    first, last = _str(entry, "from", where), _str(entry, "to", where)
    first_v, last_v = _version(first, where + " from"), _version(last, where + " to")
    if last_v < first_v:
        raise CatalogError(f"{where}: 'to' {last} is older than 'from' {first}")
    image = entry.get("image")
    if image is not None and (
        not isinstance(image, str) or try_parse(image.replace("{tag}", "v1.0.0")) is None
    ):
        raise CatalogError(f"{where}: image {image!r} is not an image reference")
    at: list[tuple[str, str]] = []
    raw_at = entry.get("at") or {}
    if not isinstance(raw_at, dict):
        raise CatalogError(f"{where}: 'at' must map upstream tags to path:line")
    for tag, place in raw_at.items():
        v = _version(tag, f"{where} at")
        if not first_v <= v <= last_v:
            raise CatalogError(f"{where}: at {tag} is outside {first} to {last}")
        at.append((str(tag), str(place)))
    source = str(entry.get("source") or "")
    if not at and not source:
        raise CatalogError(f"{where}: needs 'at' (upstream tag: path:line) or 'source'")
    if at and not entry.get("repo"):
        raise CatalogError(f"{where}: 'at' needs 'repo' (owner/name)")
    return DefaultRule(
        first=first,
        last=last,
        first_version=first_v,
        last_version=last_v,
        image=image,
        repo=str(entry.get("repo") or ""),
        what=str(entry.get("what") or ""),
        at=tuple(at),
        source=source,
    )


def _override(entry: Any, where: str) -> DefaultOverride | None:
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected a mapping")
    kinds = [k for k in ("env", "arg", "configmap") if entry.get(k)]
    if len(kinds) != 1:
        raise CatalogError(f"{where}: give exactly one of 'env', 'arg' or 'configmap'")
    kind: Literal["env", "arg", "configmap"] = (
        "env" if kinds[0] == "env" else "arg" if kinds[0] == "arg" else "configmap"
    )
    if kind == "configmap" and not (entry.get("key") and entry.get("field")):
        raise CatalogError(f"{where}: 'configmap' needs 'key' (data key) and 'field'")
    value = entry.get("value", "image")
    if value not in ("image", "other"):
        raise CatalogError(f"{where}: value must be 'image' or 'other'")
    first = entry.get("from")
    last = entry.get("to")
    return DefaultOverride(
        kind=kind,
        name=str(entry[kind]),
        is_image=value == "image",
        first=_version(first, where + " from") if first is not None else None,
        last=_version(last, where + " to") if last is not None else None,
        source=str(entry.get("source") or ""),
        key=str(entry.get("key") or ""),
        field=str(entry.get("field") or ""),
    )


def _entry(entry: Any, where: str, components: dict[str, Component], origin: str) -> DefaultEntry:
    cid = _str(entry, "component", where)
    component = components.get(cid)
    if component is None:
        raise CatalogError(f"{where}: unknown component {cid!r} (not in any 'components')")
    raw = _req(entry, "rules", where)
    if not isinstance(raw, list):
        raise CatalogError(f"{where}: 'rules' must be a list")
    rules = sorted(
        (_rule(r, f"{where} rules[{i}]") for i, r in enumerate(raw)),
        key=lambda r: r.first_version,
    )
    for a, b in itertools.pairwise(rules):
        if b.first_version <= a.last_version:
            raise CatalogError(f"{where}: rules {a.span} and {b.span} overlap")
    return DefaultEntry(
        id=_str(entry, "id", where),
        component=component,
        override=_override(entry.get("override"), where + " override"),
        optional=entry.get("optional"),
        note=str(entry.get("note") or ""),
        rules=tuple(rules),
        origin=origin,
    )


def _label(entry: Any, kind: str, i: int) -> str:
    name = entry.get("id") if isinstance(entry, dict) else None
    return f"{kind}[{i}]" + (f" ({name})" if name else "")


def parse_defaults(
    data: Any,
    name: str,
    base_components: tuple[Component, ...] = (),
    base_defaults: tuple[DefaultEntry, ...] = (),
) -> tuple[tuple[Component, ...], tuple[DefaultEntry, ...]]:
    """Components and defaults of one file, added to (or replacing, by id) the base ones."""
    if not isinstance(data, dict):
        raise CatalogError(f"{name}: expected a mapping with 'components' and 'defaults'")
    unknown = sorted(set(data) - {"components", "defaults"})
    if unknown:
        raise CatalogError(f"{name}: unknown key {unknown[0]!r} (known: components, defaults)")
    components = {c.id: c for c in base_components}
    raw_components = data.get("components") or []
    if not isinstance(raw_components, list):
        raise CatalogError(f"{name}: 'components' must be a list")
    for i, c in enumerate(raw_components):
        comp = _component(c, f"{name} {_label(c, 'components', i)}", name)
        components[comp.id] = comp
    entries = {
        e.id: (
            e
            if components.get(e.component.id) is e.component
            else DefaultEntry(
                e.id,
                components[e.component.id],
                e.override,
                e.optional,
                e.note,
                e.rules,
                e.origin,
            )
        )
        for e in base_defaults
    }
    raw_defaults = data.get("defaults") or []
    if not isinstance(raw_defaults, list):
        raise CatalogError(f"{name}: 'defaults' must be a list")
    for i, d in enumerate(raw_defaults):
        entry = _entry(d, f"{name} {_label(d, 'defaults', i)}", components, name)
        entries[entry.id] = entry
    return tuple(components.values()), tuple(entries.values())
