"""The stages put together, above the stages and below the CLI: copying images (registry to
registry, to and from bundles, the lock file), rewriting + fixing loaded manifests, comparing
two inputs' images and measuring a report; the commands (mirror, bundle, rewrite, airgap,
images --diff, report) are these calls plus argument parsing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kferry.atomic import atomic_write
from kferry.errors import InputError
from kferry.load.imagelist import parse_image_args
from kferry.name import Reference
from kferry.plan import (
    LOCK_NAME,
    Layout,
    Lock,
    Planned,
    Target,
    plan,
    plan_one,
    read_lock,
    write_lock,
)
from kferry.plan.lock import check_lock, is_lock_document, lock_entries
from kferry.transfer import preflight
from kferry.transfer.copy import Copier, ImageResult, Progress
from kferry.transfer.delta import DeltaSink, base_of, check_base, read_base, since_side
from kferry.transfer.layout.read import LayoutReader
from kferry.transfer.layout.volumes import find_volumes
from kferry.transfer.layout.write import LayoutWriter
from kferry.transfer.registry import Registries
from kferry.transfer.size import (
    AnyOf,
    FarSide,
    ImagePlan,
    Nothing,
    RegistryFar,
    SizeReport,
    compare,
    resolve_all,
    size_report,
)
from kferry.transfer.stores import ImageSink, ImageSource, RegistryStore
from kferry.transfer.transport import Options

# Discovery, the catalog, rewrite + fix and the report are imported by the functions that use
# them: ``kferry mirror`` and ``bundle`` need none of them (0.1 s of imports, more than a
# tenth of a no-op mirror rerun).
if TYPE_CHECKING:
    from kferry.catalog import Catalog
    from kferry.discover.diff import ImageDiff, Side
    from kferry.discover.model import Assumption, Finding, Inventory
    from kferry.fix import FixChange
    from kferry.load import Source
    from kferry.report import Report


@dataclass
class RewriteOutcome:
    text: str
    references: int
    overridden: list[Finding] = field(default_factory=list)
    needs_mirror_config: list[Finding] = field(default_factory=list)
    fixes: list[FixChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    assumptions: list[Assumption] = field(default_factory=list)


def join_sources(texts: Sequence[str]) -> str:
    """Several inputs become one multi-document stream."""
    out = ""
    for text in texts:
        if out:
            if not out.endswith("\n"):
                out += "\n"
            out += "---\n"
        out += text
    return out


def rewrite_manifests(
    sources: Sequence[Source],
    to: Target,
    lock: Lock | None = None,
    pin: bool = False,
    fix_on: Sequence[str] = (),
    fix_off: Sequence[str] = (),
    catalog: Catalog | None = None,
    lock_name: str | None = None,
) -> RewriteOutcome:
    """Rewrite and fix ``sources``; ``lock_name``: the lock was given by the user (checked
    against the render and ``to``, see :meth:`~kferry.rewrite.Targeter.check_lock`)."""
    from kferry.discover import find_all
    from kferry.fix import apply_fixes, enabled_fixes
    from kferry.load import load_objects
    from kferry.rewrite import EditConflict, RewriteError, Targeter, apply_edits, locators_for
    from kferry.rewrite import plan_rewrite as plan_edits

    objects, _ = load_objects(list(sources))
    found = find_all(objects, catalog)
    findings, problems = found.findings, found.problems
    locators = locators_for(sources)
    targeter = Targeter(to, lock, pin)
    if lock is not None and lock_name is not None:
        targeter.check_lock([f.reference for f in findings if f.reference is not None], lock_name)
    edits = plan_edits(findings, targeter, locators)
    knative = any(
        o.kind == "ConfigMap" and o.namespace == "knative-serving" and o.name == "config-deployment"
        for o in objects
    )
    chosen = enabled_fixes(fix_on, fix_off, knative)
    fixed = apply_fixes(chosen, objects, locators, to.registry, findings)
    texts = []
    for source in sources:
        all_edits = edits.edits.get(source.name, []) + fixed.edits.get(source.name, [])
        try:
            new = apply_edits(source.text, all_edits)
        except EditConflict as exc:
            raise RewriteError(f"{source.name}: {exc}") from None
        if all_edits:
            before = [
                (o.document.index, o.kind, o.namespace, o.name)
                for o in objects
                if o.document.source is source
            ]
            _check_same_objects(source, before, new)
        texts.append(new)
    return RewriteOutcome(
        text=join_sources(texts),
        references=edits.rewritten,
        overridden=edits.overridden,
        needs_mirror_config=edits.needs_mirror_config,
        fixes=fixed.changes,
        notes=fixed.notes,
        problems=[
            f"{p.location.object} {p.location.path}: {p.error}: {p.written!r}" for p in problems
        ],
        assumptions=found.assumptions,
    )


def _check_same_objects(source: Source, before: list[tuple[int, str, str, str]], new: str) -> None:
    """A safety net: the output parses and holds the same objects in the same order."""
    from kferry.load import Source, load_objects
    from kferry.rewrite import RewriteError

    try:
        after = [
            (o.document.index, o.kind, o.namespace, o.name)
            for o in load_objects([Source(source.name, new)])[0]
        ]
    except InputError as exc:
        raise RewriteError(
            f"{source.name}: the rewritten text does not parse ({exc}); "
            "nothing was written (please report this)"
        ) from None
    if before != after:
        raise RewriteError(
            f"{source.name}: rewriting changed the set of objects; nothing was "
            "written (please report this)"
        )


# -- comparing ----------------------------------------------------------------------------------
@dataclass
class DiffInput:
    """One side of ``images --diff`` as read: for a render also its discovery and the loader's
    warnings (the CLI prints them); a lock file has neither."""

    side: Side
    inventory: Inventory | None = None
    warnings: list[str] = field(default_factory=list)


def _json_document(text: str) -> object:
    """The text as JSON when it is a JSON object, else ``None`` (then it is read as YAML)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        doc: object = json.loads(text)
    except ValueError:
        return None
    return doc


def read_diff_input(path: str, catalog: Catalog | None = None) -> DiffInput:
    """A render (file, gzip, ``-``), a kustomize directory or a kferry lock file."""
    from kferry.discover import discover
    from kferry.discover.diff import lock_side, render_side
    from kferry.load import load_objects, read_sources

    sources = read_sources([path])
    name = "<stdin>" if path == "-" else path
    if len(sources) == 1:
        doc = _json_document(sources[0].text)
        if is_lock_document(doc):
            return DiffInput(lock_side(name, (e.source for e in lock_entries(name, doc).values())))
    objects, warnings = load_objects(sources)
    inventory = discover(objects, catalog)
    return DiffInput(render_side(name, inventory.images), inventory, warnings)


def diff_inputs(old: DiffInput, new: DiffInput) -> ImageDiff:
    from kferry.discover.diff import diff_images

    return diff_images(old.side, new.side)


# -- copying ------------------------------------------------------------------------------------
@dataclass
class Copy:
    """How to copy: registry options and parallelism, platform filter, progress."""

    options: Options
    jobs: int = 8
    platforms: Sequence[str] = ()
    progress: Progress | None = None
    referrers: bool = True

    def run(
        self,
        source: ImageSource,
        sink: ImageSink,
        planned: Sequence[Planned],
        known: Lock | None = None,
    ) -> list[ImageResult]:
        return Copier(
            source,
            sink,
            jobs=self.jobs,
            platforms=self.platforms,
            progress=self.progress,
            retries=self.options.retries,
            backoff=self.options.backoff,
            max_wait=self.options.max_wait,
            referrers=self.referrers,
            known=known,
        ).run(planned)


def mirror_images(
    refs: Sequence[Reference], to: Target, copy: Copy, known: Lock | None = None
) -> list[ImageResult]:
    """Registry to registry; ``known``: the lock of an earlier run, which lets a rerun skip
    unchanged images with two HEADs each (:mod:`kferry.transfer.copy`)."""
    return _mirror_planned(plan(refs, to), copy, known)


def _mirror_planned(
    planned: Sequence[Planned], copy: Copy, known: Lock | None = None
) -> list[ImageResult]:
    preflight.check_planned(copy.options, planned)  # each registry once: one error per cause
    registries = Registries(copy.options)
    try:
        store = RegistryStore(registries)
        return copy.run(store, store, planned, known)
    finally:
        registries.close()


def estimate_size(
    refs: Sequence[Reference],
    copy: Copy,
    to: Target | None = None,
    since: str | None = None,
    layout: Layout | str = Layout.KEEP,
) -> SizeReport:
    """What copying ``refs`` carries, from manifests only (no blob is read): against the
    target registry ``to`` and/or what ``since`` (bundle, lock file, registry) holds."""
    registries = Registries(copy.options)
    try:
        store = RegistryStore(registries)
        parts = resolve_all(store, list(dict.fromkeys(refs)), copy.platforms, copy.jobs)
        sides: list[FarSide] = []
        if to is not None:
            sides.append(RegistryFar(registries, to))
        if since is not None:
            sides.append(since_side(since, registries, copy.platforms, layout, copy.jobs))
        return size_report(compare(parts, AnyOf(sides) if sides else Nothing(), copy.jobs))
    finally:
        registries.close()


def save_bundle(
    refs: Sequence[Reference],
    out: Path,
    copy: Copy,
    split: int | None = None,
    since: str | None = None,
    layout: Layout | str = Layout.KEEP,
) -> tuple[list[ImageResult], Path]:
    """Registry to OCI layout; finished (index.json, tar, or volumes of ``split`` bytes) only
    when every image made it. With ``since`` (a bundle, lock file or registry: what the far
    side holds) a delta bundle: only what the far side lacks, and its base recorded
    (:mod:`kferry.transfer.delta`). Returns the results and where the bundle (its volume
    manifest, or its resumable staging directory) is."""
    preflight.check(copy.options, pull=refs)  # before the bundle is started
    registries = Registries(copy.options)
    with LayoutWriter(out, split) as writer:
        try:
            store = RegistryStore(registries)
            wanted = list(dict.fromkeys(refs))
            sink: ImageSink = writer
            held: list[ImageResult] = []
            if since is not None:
                far = since_side(since, registries, copy.platforms, layout, copy.jobs)
                plans = compare(
                    resolve_all(store, wanted, copy.platforms, copy.jobs), far, copy.jobs
                )
                base = base_of(plans)
                writer.base = (json.dumps(base.to_json(), indent=2) + "\n").encode()
                sink = DeltaSink(writer, set(base.blobs))
                wanted = [p.parts.source for p in plans if not p.held]
                held = [_held(p) for p in plans if p.held]
                writer.forget([r.source for r in held])  # left in OUT by an earlier save
            results = held + copy.run(store, sink, [Planned(r, r) for r in wanted])
        finally:
            registries.close()
        if _copied(results):
            progress = copy.progress or Progress()
            step = "packing" if writer.kind != "dir" else "writing index"
            progress.phase(step, str(out))
            where = writer.finish()
            progress.phase_done(step)
            return results, where
        return results, writer.root


def _held(p: ImagePlan) -> ImageResult:
    """An image the far side already holds whole: not in the delta bundle."""
    size = sum(p.parts.sizes().values())
    src = p.parts.source
    return ImageResult(
        src,
        src,
        status="skipped",
        digest=p.parts.top.digest,
        media_type=p.parts.top.media_type,
        size=size,
        bytes_skipped=size,
    )


def load_bundle(
    bundle: Path, to: Target, copy: Copy, tmp_dir: Path | None = None
) -> list[ImageResult]:
    """OCI layout to registry, each image planned from its source reference (a ``.tar.zst``
    is unpacked under ``tmp_dir``, default ``TMPDIR``, for the time of the load).

    The bundle is read first (a bad one is exit 2 before any registry is asked), then the
    target is checked (reachable, credentials accepted, push into the first repository), then
    a delta bundle's base (nothing is written when part of it is missing)."""
    if not bundle.exists() and find_volumes(bundle) is None:
        raise InputError(f"{bundle}: no such bundle")
    registries = Registries(copy.options)
    progress = copy.progress or Progress()
    try:
        progress.phase("reading bundle", str(bundle))
        with LayoutReader(bundle, tmp_dir) as reader:  # a .tar.zst is unpacked here
            images = reader.images()
            progress.phase_done("reading bundle", f"{len(images)} images")
            refs = parse_image_args([e.name for e in images], f"{bundle}: image")
            planned = plan(refs, to)
            preflight.check(copy.options, reach=[to.registry])
            preflight.check(copy.options, push=[p.target for p in planned[:1]], checked=True)
            store = RegistryStore(registries)
            base = read_base(reader)
            if base:
                check_base(base, registries, store, to, copy.jobs)
            return copy.run(reader, store, planned)
    finally:
        registries.close()


def _copied(results: Sequence[ImageResult]) -> bool:
    return all(r.done for r in results)


@dataclass
class AirgapOutcome:
    """What ``airgap`` did: the copy results, the lock file written (None when nothing was
    copied) and the rewrite (None when a copy failed: nothing was rewritten)."""

    results: list[ImageResult]
    lock: Path | None
    rewrite: RewriteOutcome | None
    bundle: Path | None = None  # with bundle_out: the finished bundle (file, volumes, dir)


def airgap(
    sources: Sequence[Source],
    to: Target,
    copy: Copy,
    out: Path,
    refs: Sequence[Reference] = (),
    *,
    bundle_out: Path | None = None,
    bundle_in: Path | None = None,
    pin: bool = False,
    fix_on: Sequence[str] = (),
    fix_off: Sequence[str] = (),
    catalog: Catalog | None = None,
) -> AirgapOutcome:
    """Copy ``refs`` to ``to`` (or save them into ``bundle_out``, or push ``bundle_in``),
    record them in ``kferry.lock.json`` beside ``out``, and write the rewritten and fixed
    ``sources`` to ``out`` once every image made it.

    The images are planned once: the copy goes to the planned targets, the lock records them
    (for a bundle: where the images will be once it is loaded) and the rewrite reads that
    lock in memory; the lock file is only written, merged with what earlier runs recorded.
    """
    lock_path = out.parent / LOCK_NAME
    check_lock(lock_path)
    finished: Path | None = None
    if bundle_in is not None:
        results = load_bundle(bundle_in, to, copy)
        entries = [r.lock_entry() for r in results if r.done]
    else:
        planned = plan(refs, to)
        if bundle_out is not None:
            results, saved = save_bundle(refs, bundle_out, copy)
            finished = saved if _copied(results) else None
            will_be = {p.source.canonical: p.target for p in planned}
            entries = [r.lock_entry(will_be[r.source.canonical]) for r in results if r.done]
        else:
            results = _mirror_planned(planned, copy, read_lock(lock_path))
            entries = [r.lock_entry() for r in results if r.done]
    lock = write_lock(lock_path, entries) if entries else read_lock(lock_path)
    written = lock_path if entries else None
    if not _copied(results):
        return AirgapOutcome(results, written, None, finished)
    outcome = rewrite_manifests(sources, to, lock, pin, fix_on, fix_off, catalog)
    atomic_write(out, outcome.text.encode())
    return AirgapOutcome(results, written, outcome, finished)


def update_lock(path: Path, results: Sequence[ImageResult]) -> Path | None:
    """Record what was copied (nothing is written when nothing was)."""
    entries = [r.lock_entry() for r in results if r.done]
    if not entries:
        return None
    write_lock(path, entries)
    return path


# -- report -------------------------------------------------------------------------------------
def build_report(
    inventory: Inventory,
    sources: Sequence[str],
    options: Options,
    platforms: Sequence[str] = (),
    to: Target | None = None,
    labels: Sequence[str] | None = None,
    jobs: int = 8,
    offline: bool = False,
) -> Report:
    """Discovered images -> a report: rows by component, sizes and digests from the source
    registries (manifests only), presence in ``to`` under ``kferry plan``'s naming."""
    from kferry.report import COMPONENT_LABELS, Report, measure, rows_of

    if labels is None:
        labels = COMPONENT_LABELS
    rows = rows_of(inventory.images, labels)
    report = Report(
        rows,
        list(sources),
        tuple(platforms),
        str(to) if to is not None else None,
        to.layout if to is not None else Layout.KEEP,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    if offline:
        for row in rows:
            row.unknown = "not looked up (--offline)"
            if to is not None:
                row.presence, row.presence_note = "unknown", "not looked up (--offline)"
                row.target = plan_one(row.reference, to).canonical
        report.warnings.append("--offline: no registry was asked; sizes and digests are unknown")
        return report
    registries = Registries(options)
    try:
        unreachable = measure(rows, registries, platforms, to, jobs)
    finally:
        registries.close()
    report.warnings += [f"{w} (its images are shown as unknown)" for w in unreachable]
    return report
