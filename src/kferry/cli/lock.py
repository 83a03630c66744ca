"""``kferry lock merge``: the lock files of several shards as one."""

from __future__ import annotations

from pathlib import Path

import click

from kferry.cli.output import stdout_console
from kferry.plan.lock import merge_locks, write_new_lock


@click.group()
def lock() -> None:
    """Lock files (kferry.lock.json)."""


@lock.command("merge")
@click.argument("locks", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="OUT",
    help="The merged lock file (replaced).",
)
def merge(locks: tuple[Path, ...], out: Path) -> None:
    """Merge the lock files of the shards of one transfer (--shard I/N) into OUT. An image
    recorded differently in two files is refused (exit 2), naming it."""
    merged = merge_locks(locks)
    write_new_lock(out, merged)
    stdout_console().print(f"{out}: {len(merged)} images from {len(locks)} lock files")
