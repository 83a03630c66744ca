"""``kferry catalog``: the compiled-in defaults kferry knows, and how a render is covered."""

from __future__ import annotations

import click
from rich.table import Table

from kferry.catalog import Catalog, DefaultEntry
from kferry.cli.options import catalog_from, catalog_option
from kferry.cli.output import (
    output_option,
    print_json,
    print_table,
    reference_column,
    stdout_console,
    warn,
)
from kferry.discover.engine import check_coverage
from kferry.load import load_objects, read_sources


def _override(entry: DefaultEntry) -> str:
    ov = entry.override
    if ov is None:
        return "none"
    name = (
        f"--{ov.name.lstrip('-')}"
        if ov.kind == "arg"
        else f"env {ov.name}"
        if ov.kind == "env"
        else f"ConfigMap {ov.name} data.{ov.key} .{ov.field}"
    )
    since = f" from {ov.first}" if ov.first is not None else ""
    until = f" to {ov.last}" if ov.last is not None else ""
    return name + since + until


def _entries(catalog: Catalog) -> list[dict[str, object]]:
    return [
        {
            "id": e.id,
            "component": e.component.name,
            "origin": e.origin,
            "detect": list(e.component.images),
            "override": _override(e),
            "override_source": e.override.source if e.override else None,
            "rules": [
                {
                    "from": r.first,
                    "to": r.last,
                    "image": r.image,
                    "source": r.citation(r.last_version),
                    "tags_read": [t for t, _ in r.at],
                }
                for r in e.rules
            ],
            "commits": [
                {"commit": c.commit, "release": c.release, "source": c.source}
                for c in e.component.commits
            ],
        }
        for e in catalog.defaults
    ]


@click.group(invoke_without_command=True)
@output_option()
@catalog_option
@click.pass_context
def catalog(ctx: click.Context, output: str, catalogs: tuple[str, ...]) -> None:
    """List the compiled-in defaults kferry knows: component, versions, image, source.

    A version outside every rule is assumed to behave like the nearest older rule, and
    kferry images/rewrite/airgap say so on stderr. Add a site's own rules with --catalog.
    """
    if ctx.invoked_subcommand is not None:
        return
    cat = catalog_from(catalogs)
    entries = _entries(cat)
    if output == "json":
        print_json(entries)
        return
    console = stdout_console()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("COMPONENT", "DEFAULT", "VERSIONS", "IMAGE", "SOURCE"):
        if col == "IMAGE":
            reference_column(table, col)
        else:
            table.add_column(col, overflow="fold")
    for e in cat.defaults:
        for r in e.rules:
            table.add_row(
                e.component.name,
                e.id,
                r.span,
                r.image or "(none)",
                r.citation(r.last_version),
            )
        table.add_row("", "", "override", _override(e), e.override.source if e.override else "")
    print_table(console, table)
    commits = sum(len(c.commits) for c in cat.components)
    console.print(
        f"{len(cat.defaults)} defaults of {len(cat.components)} components, "
        f"{commits} commit tags placed on release lines"
        + (f"; site files: {', '.join(cat.files)}" if cat.files else ""),
        style="dim",
    )


@catalog.command("check")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@output_option()
@catalog_option
def check(paths: tuple[str, ...], output: str, catalogs: tuple[str, ...]) -> None:
    """Which controllers of a render the catalog covers exactly, by assumption, or not at all.

    exact: a rule covers the version; assumed: the nearest older (or newest) rule is used;
    none: no rule is older, nothing is assumed; unknown: no catalog component (its
    compiled-in defaults, if any, are not listed: add them with --catalog FILE).
    """
    objects, warnings = load_objects(read_sources(paths))
    for w in warnings:
        warn(w)
    rows = check_coverage(objects, catalog_from(catalogs))
    if output == "json":
        print_json(
            [
                {
                    "object": r.object,
                    "container": r.container,
                    "image": r.image,
                    "component": r.component,
                    "version": r.version,
                    "status": r.status,
                    "rules": list(r.rules),
                }
                for r in rows
            ]
        )
        return
    console = stdout_console()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("STATUS", "COMPONENT", "OBJECT", "IMAGE", "RULES"):
        if col == "IMAGE":
            reference_column(table, col)
        else:
            table.add_column(col, overflow="fold")
    order = {"assumed": 0, "none": 1, "exact": 2, "unknown": 3}
    for r in sorted(rows, key=lambda r: (order[r.status], r.object)):
        table.add_row(r.status, r.component or "-", r.object, r.image, "; ".join(r.rules))
    print_table(console, table)
    counts = {s: sum(1 for r in rows if r.status == s) for s in order}
    console.print(
        f"{counts['exact']} exact, {counts['assumed']} assumed, {counts['none']} without a "
        f"rule, {counts['unknown']} containers of workloads the catalog does not know",
        style="dim",
    )
