"""Options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def kube_options(func: F) -> F:
    """``--kubeconfig`` and ``--context`` for commands that talk to a cluster."""
    func = click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Kubeconfig (default $KUBECONFIG or ~/.kube/config).",
    )(func)
    return click.option("--context", help="Kubeconfig context.")(func)
