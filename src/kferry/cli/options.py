"""Options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kferry.catalog import Catalog, catalog_files, load_catalog
from kferry.duration import DurationError, parse_duration

F = TypeVar("F", bound=Callable[..., Any])


class Duration(click.ParamType[float]):
    """A ``--timeout``-style option in :mod:`kferry.duration`'s grammar, as seconds.

    A bad value is a usage error (exit code 2) naming the option, before anything runs.
    """

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except DurationError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def kube_options(func: F) -> F:
    """``--kubeconfig`` and ``--context`` for commands that talk to a cluster."""
    func = click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Kubeconfig (default: $KUBECONFIG, a ':'-separated list merged as kubectl "
        "does, else ~/.kube/config, else the pod's service account when run in a pod).",
    )(func)
    return click.option("--context", help="Kubeconfig context (default: the current-context).")(
        func
    )


def catalog_option(func: F) -> F:
    """``--catalog FILE`` (repeatable; also ``KFERRY_CATALOG``): a site's own defaults."""
    return click.option(
        "--catalog",
        "catalogs",
        multiple=True,
        metavar="FILE",
        help="Catalog file of compiled-in defaults (same schema as kferry's own; adds or "
        "replaces entries by id). Repeatable; also KFERRY_CATALOG (':'-separated).",
    )(func)


def catalog_from(catalogs: tuple[str, ...]) -> Catalog:
    """The built-in catalog with KFERRY_CATALOG and ``--catalog`` files on top."""
    return load_catalog(catalog_files(catalogs))
