"""Options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kferry.catalog import Catalog, catalog_files, load_catalog

F = TypeVar("F", bound=Callable[..., Any])


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
