"""``kferry apply``: install manifests in the order Kubeflow needs."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn
from rich.progress import Progress as RichProgress

from kferry.apply import PHASES, Applier, Progress
from kferry.apply.rollout import Rollout, deployments_of, wait_deployments
from kferry.cli.options import DURATION, kube_options
from kferry.cli.output import output_option, print_json, stdout_console
from kferry.kube import Kube
from kferry.kube.objects import as_dict
from kferry.load import load_objects, read_sources


class _Bars(Progress):
    def __init__(self) -> None:
        self.bars = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), transient=True
        )
        self.task: TaskID | None = None

    def phase(self, index: int, total: int) -> None:
        self.task = self.bars.add_task(f"{index + 1}/4 {PHASES[index]}", total=total)

    def done(self, ref: str, outcome: str) -> None:
        if self.task is not None:
            self.bars.advance(self.task)


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATH|-]")
@click.option(
    "--timeout",
    type=DURATION,
    default="5m",
    show_default=True,
    metavar="D",
    help="How long to wait for CRDs, kinds and webhook services.",
)
@click.option("--dry-run", is_flag=True, help="Server-side dry run: nothing is stored.")
@click.option(
    "--wait",
    is_flag=True,
    help="Then wait (up to --timeout) for every Deployment to become available; stop at once "
    "on a pod that cannot pull its image, with the reason and the fix.",
)
@click.option(
    "--registry",
    metavar="REGISTRY[:PORT]/PROJECT",
    help="With --wait: the private registry, for the fixes of pull failures.",
)
@click.option(
    "--exclude-kind",
    "exclude",
    multiple=True,
    metavar="KIND",
    help="Do not apply objects of this kind (repeatable).",
)
@output_option()
@kube_options
@click.pass_context
def apply(
    ctx: click.Context,
    paths: tuple[str, ...],
    timeout: float,
    dry_run: bool,
    wait: bool,
    registry: str | None,
    exclude: tuple[str, ...],
    output: str,
    kubeconfig: Path | None,
    context: str | None,
) -> None:
    """Server-side apply (field manager kferry) in dependency order, with waits."""
    objects, _ = load_objects(read_sources(paths or ("-",)))
    dicts = [as_dict(o) for o in objects if o.kind not in exclude]
    kube = Kube.connect(kubeconfig, context)
    try:
        if sys.stderr.isatty():
            bars = _Bars()
            with bars.bars:
                result = Applier(kube, timeout=timeout, dry_run=dry_run, progress=bars).run(dicts)
        else:
            result = Applier(kube, timeout=timeout, dry_run=dry_run).run(dicts)
        rollouts: list[Rollout] = []
        if wait and not dry_run and not result.failed:
            rollouts = wait_deployments(
                kube,
                deployments_of(dicts, kube.namespace),
                timeout=timeout,
                registry=registry,
                report=lambda ref, state: click.echo(f"{ref}: {state}", err=True),
            )
    finally:
        kube.close()
    bad = [r for r in rollouts if r.outcome != "available"]
    if output == "json":
        doc = result.to_json()
        if wait:
            doc["rollouts"] = [r.to_json() for r in rollouts]
        print_json(doc)
    else:
        console = stdout_console()
        console.print(
            f"{len(result.applied)} applied, {len(result.unchanged)} unchanged, "
            f"{len(result.failed)} failed" + (" (dry run)" if dry_run else "")
        )
        for ref, message in result.failed:
            console.print(f"FAILED {ref}: {message}", style="red")
        if wait:
            available = len(rollouts) - len(bad)
            console.print(f"{available} of {len(rollouts)} Deployments available")
        for r in bad:
            console.print(f"FAILED {r.ref}: {r.message}", style="red", markup=False)
            if r.fix:
                console.print(f"  fix: {r.fix}", markup=False)
    ctx.exit(1 if result.failed or bad else 0)
