"""Printing helpers shared by commands: consoles, JSON, warnings."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

OUTPUT_CHOICES = click.Choice(["table", "json", "list"])


def stdout_console() -> Console:
    """A console for stdout: colours on a terminal, plain wide text in a pipe."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(width=240, no_color=True, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def printable(text: str) -> str:
    """``text`` with control characters (ESC sequences that would move the cursor, retitle
    the terminal or hide text, CR, BEL, C1 codes) shown as ``\\xNN``; newlines and tabs kept."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


def warn(message: str) -> None:
    click.echo(f"kferry: warning: {printable(message)}", err=True)
