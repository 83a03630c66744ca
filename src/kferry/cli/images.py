"""``kferry images``: what discovery found, as a table, a list or JSON."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kferry.catalog import Catalog
from kferry.cli.options import catalog_from, catalog_option
from kferry.cli.output import (
    output_option,
    print_json,
    print_table,
    reference_column,
    stdout_console,
    warn,
)
from kferry.discover import Assumption, Image, Inventory, Location, discover
from kferry.discover.diff import ImageDiff, Side
from kferry.errors import InputError
from kferry.load import Source, load_objects, read_sources
from kferry.pipeline import diff_inputs, read_diff_input


def inventory_from(paths: tuple[str, ...], catalog: Catalog | None = None) -> tuple[Inventory, int]:
    """Load and discover; warnings go to stderr. Returns the inventory and object count."""
    if not paths:
        if sys.stdin.isatty():
            raise InputError("no input: give rendered YAML files, a kustomize directory or '-'")
        paths = ("-",)
    return inventory_of(read_sources(paths), catalog)


def inventory_of(sources: list[Source], catalog: Catalog | None = None) -> tuple[Inventory, int]:
    """Discover in sources already read; warnings go to stderr."""
    objects, warnings = load_objects(sources)
    inventory = discover(objects, catalog)
    warn_inventory(inventory, warnings)
    return inventory, len(objects)


def warn_inventory(inventory: Inventory, load_warnings: list[str], prefix: str = "") -> None:
    """The loader's warnings (they name their source), invalid references, notes and
    assumptions, on stderr; ``prefix`` says which input the others are about (``--diff``)."""
    for w in load_warnings:
        warn(w)
    for p in inventory.problems:
        warn(f"{prefix}{p.location.object} {p.location.path}: {p.error}: {p.written!r}")
    for note in inventory.notes:
        warn(prefix + note)
    for a in inventory.assumptions:
        warn(prefix + a.message())


def warn_assumptions(assumptions: list[Assumption]) -> None:
    """One stderr line per component whose version no catalog rule covers."""
    for a in assumptions:
        warn(a.message())


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATH|-]...")
@output_option(
    ("table", "list", "json", "yaml"),
    help="table for people, list (one canonical reference per line), json or yaml.",
)
@click.option("--why", is_flag=True, help="List every place each image was found.")
@click.option(
    "--diff",
    nargs=2,
    metavar="OLD NEW",
    help="Compare two inputs (render, kustomize directory, - or kferry.lock.json): images "
    "added, removed and changed. -o list prints what NEW needs that OLD lacked.",
)
@click.option(
    "--exit-code",
    is_flag=True,
    help="With --diff: exit 1 when there are differences, 0 when there are none.",
)
@catalog_option
def images(
    paths: tuple[str, ...],
    output: str,
    why: bool,
    diff: tuple[str, str] | None,
    exit_code: bool,
    catalogs: tuple[str, ...],
) -> None:
    """List every image the manifests need, with where it was found.

    PATH is a rendered YAML file (.gz is fine), a kustomize directory, or - for stdin.
    Finds image fields, images inside ConfigMap JSON/YAML, env values and args, composed
    images (istio hub/tag, KServe image+version, KFP profile controller) and images that
    controllers pull by compiled-in default.
    """
    if diff is not None:
        if paths:
            raise click.UsageError("--diff takes exactly OLD and NEW; no other PATH")
        if diff == ("-", "-"):
            raise click.UsageError("--diff: only one of OLD and NEW can be - (stdin)")
        result = compare(diff, catalog_from(catalogs))
        print_diff(result, output, why)
        if exit_code and result.differs:
            sys.exit(1)
        return
    if exit_code:
        raise click.UsageError("--exit-code needs --diff OLD NEW")
    inventory, count = inventory_from(paths, catalog_from(catalogs))
    if output == "json":
        print_json([img.to_json() for img in inventory.images])
        return
    if output == "list":
        sys.stdout.write("".join(f"{img.canonical}\n" for img in inventory.images))
        return
    console = stdout_console()
    if why:
        for img in inventory.images:
            head = Text(img.canonical, style="bold")
            if img.optional:
                head.append("  (optional)", style="yellow")
            console.print(head)
            for loc in img.locations:
                line = Text(f"  {loc.how:<9}{loc.object}  ", style="dim")
                line.append(loc.path)
                if loc.optional:
                    line.append(f"  [optional: {loc.optional}]", style="yellow")
                if loc.assumed:
                    line.append(f"  [assumed: rule of {loc.rule_version}]", style="yellow")
                console.print(line, overflow="fold")
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        reference_column(table, "IMAGE")
        table.add_column("FOUND IN", justify="right")
        table.add_column("OPTIONAL")
        for img in inventory.images:
            table.add_row(img.canonical, str(len(img.locations)), "yes" if img.optional else "")
        print_table(console, table)
    optional = sum(1 for img in inventory.images if img.optional)
    console.print(
        f"{len(inventory.images)} images ({optional} optional) in {count} objects",
        style="dim",
    )
    by_default = [
        i.canonical for i in inventory.images if all(loc.how == "default" for loc in i.locations)
    ]
    if by_default:
        console.print(
            f"{len(by_default)} pulled only by a controller's compiled-in default (named nowhere "
            "in the manifests): kferry rewrite sets them where the component allows, the others "
            "need node mirror configuration (kferry mirror-config)",
            style="dim",
        )


def compare(paths: tuple[str, str], catalog: Catalog) -> ImageDiff:
    """Read both sides (warnings on stderr, each naming its input) and compare."""
    sides = []
    for path in paths:
        read = read_diff_input(path, catalog)
        if read.inventory is not None:
            warn_inventory(read.inventory, read.warnings, f"{read.side.name}: ")
        sides.append(read)
    return diff_inputs(sides[0], sides[1])


def _used_in(image: Image, side: Side) -> str:
    if not side.located:
        return "(lock file: no locations)"
    if not image.locations:
        return ""
    first = image.locations[0].object
    more = len(image.locations) - 1
    return f"in {first} (+{more} more)" if more else f"in {first}"


def _rows(console: Console, rows: list[tuple[str, str, list[Location]]], why: bool) -> None:
    """``  NAME  used in``, names padded to a common width (the long digest ones are not)."""
    width = max((len(name) for name, _, _ in rows if len(name) <= 90), default=0)
    for name, used, locations in rows:
        line = Text(f"  {name.ljust(width)}  ")
        line.append(used, style="dim")
        console.print(line, overflow="fold")
        if why:
            for loc in locations:
                detail = Text(f"      {loc.how:<9}{loc.object}  ", style="dim")
                detail.append(loc.path)
                console.print(detail, overflow="fold")


def print_diff(result: ImageDiff, output: str, why: bool) -> None:
    if output == "json":
        print_json(result.to_json())
        return
    if output == "list":
        sys.stdout.write("".join(f"{ref}\n" for ref in result.to_carry()))
        return
    console = stdout_console()
    for title, group, side in (
        ("ADDED", result.added, result.new),
        ("REMOVED", result.removed, result.old),
    ):
        if group:
            console.print(f"{title} ({len(group)})", style="bold")
            rows = [(i.canonical, _used_in(i, side), i.locations) for i in group]
            _rows(console, rows, why and side.located)
    if result.changed:
        console.print(f"CHANGED ({len(result.changed)})", style="bold")
        repo_w = max(
            (len(c.repository) for c in result.changed if len(c.repository) <= 60), default=0
        )
        olds = [len(_version(c.old)) for c in result.changed]
        old_w = max((n for n in olds if n <= 30), default=0)
        rows = [
            (
                f"{c.repository.ljust(repo_w)}  {_version(c.old).ljust(old_w)} -> "
                f"{_version(c.new)}",
                _used_in(c.new, result.new),
                c.new.locations,
            )
            for c in result.changed
        ]
        _rows(console, rows, why and result.new.located)
    if not result.differs:
        console.print("no differences", style="bold")
    for side in (result.old, result.new):
        if not side.located:
            console.print(
                f"{side.name} is a lock file: it records what was copied, not where an image "
                "is used",
                style="dim",
            )
    console.print(
        f"{len(result.added)} added, {len(result.removed)} removed, {len(result.changed)} "
        f"changed, {result.unchanged} unchanged ({len(result.old.images)} images in "
        f"{result.old.name}, {len(result.new.images)} in {result.new.name})",
        style="dim",
    )


def _version(image: Image) -> str:
    """Tag and/or digest: what differs within one repository."""
    ref = image.reference
    out = ref.tag or ""
    if ref.digest:
        out += f"@{ref.digest}"
    return out or "latest"
