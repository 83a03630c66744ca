"""Discovery: every image a set of Kubernetes objects needs, with every place it is named."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kferry.catalog import Catalog, load_catalog
from kferry.discover.composed import Composer
from kferry.discover.defaults import Coverage, compiled_defaults, coverage
from kferry.discover.embedded import EmbeddedCache
from kferry.discover.model import Assumption, Finding, Image, Inventory
from kferry.discover.objects import ObjectIndex
from kferry.discover.walker import ObjectWalker
from kferry.load.documents import KubeObject


@dataclass(slots=True)
class Found:
    """Every finding (valid references), every problem (invalid ones), notes, assumptions."""

    findings: list[Finding]
    problems: list[Finding]
    notes: list[str]
    assumptions: list[Assumption]


def find_all(objects: Iterable[KubeObject], catalog: Catalog | None = None) -> Found:
    """Every finding (valid references), every problem (invalid ones), notes, assumptions."""
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
    defaults, assumptions = compiled_defaults(catalog, index)
    findings.extend(defaults)
    return Found(findings, problems, [*composer.notes, *warnings], assumptions)


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
    found = find_all(objects, catalog)
    return Inventory(group(found.findings), found.problems, found.notes, found.assumptions)


def check_coverage(objects: Iterable[KubeObject], catalog: Catalog | None = None) -> list[Coverage]:
    """Every workload container and how the catalog of compiled-in defaults covers it."""
    return coverage(catalog or load_catalog(), ObjectIndex(objects))
