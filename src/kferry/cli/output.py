"""Printing helpers shared by commands: consoles, JSON/YAML, warnings, colour."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

F = TypeVar("F", bound=Callable[..., Any])


# -o yaml is carried beside the command's value: the option hands the command "json" (every
# command's machine-readable branch) and records "yaml" here, where print_json reads it. So
# every command with -o json gets -o yaml from its option declaration alone.
_FORMAT_KEY = "kferry.output.format"


def record_format(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value == "yaml":
        ctx.meta[_FORMAT_KEY] = "yaml"
        return "json"
    return value


def output_option(
    choices: tuple[str, ...] = ("table", "json", "yaml"),
    help: str = "table for people; json or yaml for scripts.",
) -> Callable[[F], F]:
    """``-o/--output`` with ``table``, ``json`` and ``yaml`` (plus any extra ``choices``)."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        callback=record_format,
        help=help,
    )


def data_format() -> str:
    """``json`` or ``yaml``: what the running command's ``-o`` asked for."""
    ctx = click.get_current_context(silent=True)
    return str(ctx.meta.get(_FORMAT_KEY, "json")) if ctx is not None else "json"


def print_json(data: Any) -> None:
    """The machine-readable output: JSON, or YAML (same data) when ``-o yaml`` was given."""
    if data_format() == "yaml":
        import yaml  # only on this path

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        # "---" first: a command printing several results (status --watch) gives a stream
        text = yaml.dump(
            data, Dumper=dumper, sort_keys=False, allow_unicode=True, explicit_start=True
        )
        sys.stdout.write(text)
        return
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def colour_wanted() -> bool:
    """False when ``NO_COLOR`` is set (https://no-color.org; ``--no-color`` sets it)."""
    return not os.environ.get("NO_COLOR")


def stdout_console() -> Console:
    """A console for stdout: colours on a terminal (unless NO_COLOR), plain wide text in a
    pipe."""
    if sys.stdout.isatty():
        return Console(highlight=False, no_color=not colour_wanted())
    return Console(width=240, no_color=True, highlight=False, soft_wrap=False)


def printable(text: str) -> str:
    """``text`` with control characters (ESC sequences that would move the cursor, retitle
    the terminal or hide text, CR, BEL, C1 codes) shown as ``\\xNN``; newlines and tabs kept."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


def warn(message: str) -> None:
    click.echo(f"kferry: warning: {printable(message)}", err=True)


def reference_column(table: Table, header: str, **kwargs: Any) -> None:
    """A column of image references: never folded or cut (a digest cut in the middle can
    neither be read nor copied); :func:`print_table` makes room for it."""
    table.add_column(header, no_wrap=True, overflow="ignore", **kwargs)


def print_table(console: Console, table: Table) -> None:
    """Print ``table``; when its unbreakable columns (references) do not fit the console, the
    table is laid out wider than the console (the terminal wraps the long lines) instead of
    rich cutting each reference at the console's edge."""
    from rich.measure import Measurement

    need = Measurement.get(console, console.options.update_width(1_000_000), table)
    width = console.width
    if need.minimum <= width:
        console.print(table)
        return
    console.width = min(need.maximum, need.minimum + 40)
    try:
        console.print(table)
    finally:
        console.width = width
