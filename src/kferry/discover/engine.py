"""Discovery: every image a set of Kubernetes objects needs, with every place it is named."""

from __future__ import annotations

from collections.abc import Iterable

from kferry.catalog import Catalog, load_catalog
from kferry.discover.composed import Composer
from kferry.discover.defaults import compiled_defaults
from kferry.discover.embedded import EmbeddedCache
from kferry.discover.model import Finding, Image, Inventory
from kferry.discover.objects import ObjectIndex
from kferry.discover.walker import ObjectWalker
from kferry.load.documents import KubeObject


def find_all(
    objects: Iterable[KubeObject], catalog: Catalog | None = None
) -> tuple[list[Finding], list[Finding], list[str]]:
    """Every finding (valid references), every problem (invalid ones) and notes."""
    catalog = catalog or load_catalog()
    index = ObjectIndex(objects)
    cache = EmbeddedCache()
    composer = Composer(catalog, index, cache)
    composer.run()
    findings: list[Finding] = list(composer.findings)
    problems: list[Finding] = []
    warnings: list[str] = []
    for obj in index.objects:
        walker = ObjectWalker(obj, catalog, cache, composer.claimed)
        walker.run()
        findings.extend(walker.findings)
        problems.extend(walker.problems)
        warnings.extend(walker.warnings)
    findings.extend(compiled_defaults(catalog, index))
    return findings, problems, [*composer.notes, *warnings]


def group(findings: Iterable[Finding]) -> list[Image]:
    """Findings -> images, one per canonical reference, sorted by it."""
    images: dict[str, Image] = {}
    for f in findings:
        if f.reference is None:
            continue
        key = f.reference.canonical
        img = images.get(key)
        if img is None:
            img = images[key] = Image(f.reference)
        if f.written not in img.written:
            img.written.append(f.written)
        if f.location not in img.locations:
            img.locations.append(f.location)
    return [images[k] for k in sorted(images)]


def discover(objects: Iterable[KubeObject], catalog: Catalog | None = None) -> Inventory:
    findings, problems, notes = find_all(objects, catalog)
    return Inventory(group(findings), problems, notes)
