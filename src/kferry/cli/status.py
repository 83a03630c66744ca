"""``kferry status``: is each InferenceService ready, failed (and why) or deploying."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from kferry.cli.options import DURATION, kube_options
from kferry.cli.output import output_option, print_json, printable, stdout_console, warn
from kferry.duration import format_duration
from kferry.errors import InputError
from kferry.kube import Kube
from kferry.status import (
    DEPLOYING,
    FAILED,
    READY,
    Selector,
    StatusResult,
    cluster_read,
    cluster_snapshots,
    evaluate,
    exit_code,
    follow,
    load_file,
    select,
)

DEFAULT_WAIT_TIMEOUT = 15 * 60.0  # past the 10-minute Knative and Deployment progress deadlines
STATE_STYLES = {READY: "green", FAILED: "red", DEPLOYING: "yellow"}


def print_results(results: Sequence[StatusResult], output: str) -> None:
    if output == "json":
        print_json([r.to_json() for r in results])
        return
    console = stdout_console()
    if not results:
        console.print("no InferenceServices", style="dim")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAMESPACE", "NAME", "STATE", "WAITING ON", "REASON"):
        table.add_column(column, no_wrap=True)
    table.add_column("MESSAGE", overflow="fold", ratio=1)
    table.add_column("URL", no_wrap=True)
    for r in results:
        # Text (not markup) of printable characters: a condition message is whatever a
        # controller or a user put there, escape sequences and "[bold]" included.
        table.add_row(
            Text(printable(r.namespace)),
            Text(printable(r.name)),
            Text(r.state, style=STATE_STYLES[r.state]),
            Text(printable(r.waiting_on)),
            Text(printable(r.reason)),
            Text(printable(r.message)),
            Text(printable(r.url)),
        )
    console.print(table)
    counts = {s: sum(1 for r in results if r.state == s) for s in (READY, FAILED, DEPLOYING)}
    console.print(
        f"{len(results)} InferenceServices: "
        + ", ".join(f"{n} {state}" for state, n in counts.items()),
        style="dim",
    )


def _check_usage(
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    file: str | None,
    watch: bool,
    wait: bool,
    timeout: float | None,
) -> float | None:
    """Refuse contradictory flags (exit code 2); the timeout in seconds for following."""
    if namespace is not None and all_namespaces:
        raise InputError("-n/--namespace and -A/--all-namespaces exclude each other")
    if name is not None and all_namespaces:
        raise InputError("NAME and -A/--all-namespaces exclude each other; use -n NAMESPACE")
    if file is not None and (watch or wait):
        raise InputError(
            "--watch and --wait follow the cluster; the -f input is one snapshot, run without them"
        )
    if timeout is not None and not (watch or wait):
        raise InputError("--timeout applies to --wait and --watch")
    seconds = timeout
    if seconds is None and wait:
        seconds = DEFAULT_WAIT_TIMEOUT
    return seconds


@click.command("status")
@click.argument("name", required=False)
@click.option("-n", "--namespace", metavar="NS", help="Only this namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@click.option(
    "-f",
    "--file",
    "file",
    metavar="FILE|-",
    help="Read InferenceServices (an object or a List, JSON or YAML) from FILE or stdin.",
)
@click.option("--watch", is_flag=True, help="Print again whenever a status changes.")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until none is deploying; exit code 3 if --timeout passes first.",
)
@click.option(
    "--timeout",
    type=DURATION,
    metavar="D",
    help="How long --wait/--watch go on: 90s, 5m, 1h30m (--wait default: 15m).",
)
@output_option()
@kube_options
@click.pass_context
def status(
    ctx: click.Context,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    file: str | None,
    watch: bool,
    wait: bool,
    timeout: float | None,
    output: str,
    kubeconfig: Path | None,
    context: str | None,
) -> None:
    """Tell whether each InferenceService is ready, failed (with the reason and the message that
    explains it) or deploying (with the condition it waits on).

    \b
    kubectl get isvc -A -o json | kferry status -f -     # offline, from kubectl's output
    kferry status -f isvc.yaml -o json                    # [{name, namespace, state, ...}]

    Exit codes: 0 all ready, 1 any failed, 2 bad usage or input, 3 --wait timed out while
    still deploying.
    """
    seconds = _check_usage(name, namespace, all_namespaces, file, watch, wait, timeout)
    selector = Selector(name, namespace, all_namespaces)

    if file is not None:
        loaded = load_file(file)
        for w in loaded.warnings:
            warn(w)
        if name is not None and not select(loaded.objects, selector):
            raise InputError(f"{loaded.name}: no {selector.describe()}")
        results = evaluate(loaded.objects, selector)
        print_results(results, output)
        ctx.exit(exit_code(results))

    kube = Kube.connect(kubeconfig, context)
    ctx.call_on_close(kube.close)
    if not (watch or wait):
        results = evaluate(cluster_read(selector, kube)(), selector)
        print_results(results, output)
        ctx.exit(exit_code(results))

    def show(results: list[StatusResult]) -> None:
        if output == "table":
            stamp = datetime.now(UTC).strftime("%H:%M:%SZ")
            stdout_console().print(f"-- {stamp}", style="dim")
        print_results(results, output)

    outcome = follow(
        cluster_snapshots(selector, kube),
        selector,
        until_settled=wait,
        timeout=seconds,
        on_change=show if watch else None,
    )
    if not watch:
        print_results(outcome.results, output)
    if outcome.timed_out and outcome.deploying:
        still = ", ".join(
            f"{r.namespace}/{r.name}" + (f" (waiting on {r.waiting_on})" if r.waiting_on else "")
            for r in outcome.deploying
        )
        click.echo(
            f"kferry: timed out after {format_duration(seconds or 0)}; still deploying: {still}",
            err=True,
        )
    ctx.exit(exit_code(outcome.results, waited=wait or outcome.timed_out))
