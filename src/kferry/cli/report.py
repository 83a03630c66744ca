"""``kferry report``: a page for the people who approve a transfer (HTML or Markdown)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from kferry.atomic import atomic_write
from kferry.cli.flags import (
    CopyFlags,
    LoginFlags,
    TlsFlags,
    login_flags,
    registry_options,
    tls_flags,
)
from kferry.cli.images import inventory_from
from kferry.cli.options import catalog_from, catalog_option
from kferry.cli.output import warn
from kferry.errors import InputError, KferryError
from kferry.pipeline import build_report
from kferry.plan import LAYOUTS, Target
from kferry.report import COMPONENT_LABELS, to_html, to_markdown

FORMATS = ("html", "md")


def format_for(output: str, fmt: str | None) -> tuple[str, Path | None]:
    """``-o FILE`` (format from the suffix unless ``--format``), ``-o -`` or ``-o html|md``
    (that format on stdout). Returns the format and the file (None: stdout)."""
    if output in FORMATS:
        return fmt or output, None
    if output == "-":
        return fmt or "html", None
    path = Path(output)
    guessed = "md" if path.suffix.lower() in (".md", ".markdown") else "html"
    return fmt or guessed, path


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATH|-]...")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE|html|md",
    help="Write the report to FILE (.md/.markdown: Markdown, else HTML); 'html' or 'md' alone "
    "(or '-') prints that format on stdout (write a file named so as ./md).",
)
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), help="Format, overriding the file's suffix."
)
@click.option(
    "--registry",
    metavar="REGISTRY[:PORT]/PROJECT",
    help="Private registry: say for each image whether it is there already (kferry plan's naming).",
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="keep",
    show_default=True,
    help="Target naming under --registry, as for kferry plan/mirror.",
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT]",
    help="Count only these platforms of multi-arch images (repeatable; default all).",
)
@click.option(
    "--component-label",
    "labels",
    multiple=True,
    metavar="LABEL",
    help="Object label naming an image's component (repeatable, first set wins; default "
    + ", ".join(COMPONENT_LABELS)
    + "; then the namespace).",
)
@click.option("--offline", is_flag=True, help="Ask no registry: sizes and digests unknown.")
@tls_flags
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=8, show_default=True)
@login_flags
@catalog_option
def report(
    paths: tuple[str, ...],
    output: str,
    fmt: str | None,
    registry: str | None,
    layout: str,
    platforms: tuple[str, ...],
    labels: tuple[str, ...],
    offline: bool,
    tls: TlsFlags,
    jobs: int,
    login: LoginFlags,
    catalogs: tuple[str, ...],
) -> None:
    """Write a self-contained report of every image a render needs, for approval.

    Images grouped by component, with size for the chosen platforms, digest, where each is
    named and why it is needed; with --registry, whether it is already in the private registry.
    Sizes come from manifests only (no layer is downloaded). A registry that cannot be reached
    is a warning: its images are shown with size unknown and the reason, and the exit code
    stays 0 (exit 1 only when the report cannot be written).

    \b
    Examples:
      kferry report render.yaml -o report.html
      kferry report render.yaml --platform linux/amd64 --registry harbor.corp:443/kubeflow \\
          --ca-file corp-ca.pem -o report.html
      kferry report render.yaml -o md > ticket.md
    """
    kind, path = format_for(output, fmt)
    dest = Target.parse(registry, layout) if registry else None
    if dest is not None and not dest.project:
        raise InputError(f"--registry {registry!r}: expected REGISTRY[:PORT]/PROJECT")
    options = registry_options(tls, login, dest.registry if dest else None, CopyFlags(jobs=jobs))
    # a report is made at a desk: a host that does not answer is not retried for minutes
    options = dataclasses.replace(options, retries=1, timeout=30.0)
    inventory, _ = inventory_from(paths, catalog_from(catalogs))
    built = build_report(
        inventory,
        list(paths) or ["-"],
        options,
        platforms,
        dest,
        labels or COMPONENT_LABELS,
        jobs,
        offline,
    )
    for w in built.warnings:
        warn(w)
    text = to_html(built) if kind == "html" else to_markdown(built)
    if path is None:
        sys.stdout.write(text)
        return
    try:
        atomic_write(path, text.encode())
    except OSError as exc:
        raise KferryError(f"{path}: cannot write the report: {exc.strerror}") from None
    click.echo(f"{path}: {len(built.rows)} images, {kind}", err=True)
