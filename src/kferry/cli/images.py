"""``kferry images``: what discovery found, as a table, a list or JSON."""

from __future__ import annotations

import sys

import click
from rich.table import Table
from rich.text import Text

from kferry.catalog import Catalog
from kferry.cli.options import catalog_from, catalog_option
from kferry.cli.output import OUTPUT_CHOICES, print_json, stdout_console, warn
from kferry.discover import Assumption, Inventory, discover
from kferry.errors import InputError
from kferry.load import Source, load_objects, read_sources


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
    for w in warnings:
        warn(w)
    inventory = discover(objects, catalog)
    for p in inventory.problems:
        warn(f"{p.location.object} {p.location.path}: {p.error}: {p.written!r}")
    for note in inventory.notes:
        warn(note)
    warn_assumptions(inventory.assumptions)
    return inventory, len(objects)


def warn_assumptions(assumptions: list[Assumption]) -> None:
    """One stderr line per component whose version no catalog rule covers."""
    for a in assumptions:
        warn(a.message())


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATH|-]...")
@click.option(
    "-o",
    "--output",
    type=OUTPUT_CHOICES,
    default="table",
    show_default=True,
    help="table for people, list (one canonical reference per line) or json.",
)
@click.option("--why", is_flag=True, help="List every place each image was found.")
@catalog_option
def images(paths: tuple[str, ...], output: str, why: bool, catalogs: tuple[str, ...]) -> None:
    """List every image the manifests need, with where it was found.

    PATH is a rendered YAML file (.gz is fine), a kustomize directory, or - for stdin.
    Finds image fields, images inside ConfigMap JSON/YAML, env values and args, composed
    images (istio hub/tag, KServe image+version, KFP profile controller) and images that
    controllers pull by compiled-in default.
    """
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
        table.add_column("IMAGE", overflow="fold")
        table.add_column("FOUND IN", justify="right")
        table.add_column("OPTIONAL")
        for img in inventory.images:
            table.add_row(img.canonical, str(len(img.locations)), "yes" if img.optional else "")
        console.print(table)
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
