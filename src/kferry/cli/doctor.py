"""``kferry doctor``: the field report's problems, found in a live cluster."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from kferry.cli.options import kube_options
from kferry.cli.output import output_option, print_json, print_table, stdout_console
from kferry.doctor import diagnose
from kferry.doctor.pulls import lock_targets
from kferry.kube import Kube
from kferry.plan import read_lock


@click.command()
@click.option(
    "--registry",
    metavar="REGISTRY[:PORT]/PROJECT",
    help="The private registry: images elsewhere are reported.",
)
@click.option(
    "--lock",
    type=click.Path(dir_okay=False, path_type=Path),
    help="kferry's lock file: the source of each mirrored image, for the mirror commands.",
)
@output_option()
@kube_options
@click.pass_context
def doctor(
    ctx: click.Context,
    registry: str | None,
    lock: Path | None,
    output: str,
    kubeconfig: Path | None,
    context: str | None,
) -> None:
    """Check a cluster for known air-gap problems and say what to do (exit 1 if any)."""
    targets = lock_targets(read_lock(lock)) if lock is not None else {}
    kube = Kube.connect(kubeconfig, context)
    try:
        findings = diagnose(kube, registry, targets)
    finally:
        kube.close()
    if output == "json":
        print_json([f.to_json() for f in findings])
    else:
        console = stdout_console()
        if not findings:
            console.print("no problems found")
        else:
            table = Table(box=None, pad_edge=False, header_style="bold")
            for col in ("SEVERITY", "OBJECT", "FINDING", "FIX"):
                table.add_column(col, overflow="fold")
            for f in findings:
                table.add_row(f.severity, f.object, f.finding, f.fix)
            print_table(console, table)  # references in findings: whole, never cut
    ctx.exit(1 if findings else 0)
