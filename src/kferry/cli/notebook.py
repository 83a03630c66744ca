"""``kferry notebook build|add|list|remove`` and ``kferry wheels save|check``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kferry.cli.flags import (
    CopyFlags,
    LoginFlags,
    TlsFlags,
    login_flags,
    registry_options,
    tls_flags,
)
from kferry.cli.options import kube_options
from kferry.cli.output import print_json, stdout_console, warn
from kferry.errors import InputError
from kferry.name import InvalidReference, parse

if TYPE_CHECKING:
    from kferry.kube import Kube
    from kferry.notebook.spawner import Change

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def notebook() -> None:
    """Custom notebook images: build them onto a base (no Docker), offer them in the spawner."""


@notebook.command("build")
@click.argument("base", metavar="BASE")
@click.option(
    "-r",
    "--requirements",
    "requirements",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="pip requirements file (repeatable); resolved for the image's Python and platform.",
)
@click.option(
    "--wheels",
    type=click.Path(file_okay=False, path_type=Path),
    help="Wheelhouse carried across (kferry wheels save): install from it, no network.",
)
@click.option(
    "--add",
    "adds",
    multiple=True,
    metavar="SRC:DEST",
    help="Also copy a local file or directory to DEST in the image (repeatable).",
)
@click.option(
    "--to", "to", required=True, metavar="REG/PROJECT/NAME:TAG", help="The image to make."
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path),
    metavar="BUNDLE",
    help="Write the image into this bundle (dir, .tar, .tar.zst) instead of pushing it.",
)
@click.option(
    "--base-bundle",
    type=click.Path(exists=True, path_type=Path),
    metavar="BUNDLE",
    help="Read BASE from this bundle instead of a registry.",
)
@click.option(
    "--platform", metavar="OS/ARCH", help="The platform to build when BASE is multi-arch."
)
@tls_flags
@login_flags
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build_cmd(
    base: str,
    requirements: tuple[Path, ...],
    wheels: Path | None,
    adds: tuple[str, ...],
    to: str,
    out: Path | None,
    base_bundle: Path | None,
    platform: str | None,
    tls: TlsFlags,
    login: LoginFlags,
    as_json: bool,
) -> None:
    """Install Python packages into a new layer on BASE and push the image (digest printed).

    The base's Python (version, site-packages) and platform are read from the image itself;
    pip resolves wheels for exactly them. Base layers stay byte for byte the same.
    """
    from kferry.notebook.build import BuildRequest, build
    from kferry.notebook.layer import AddFile

    try:
        host = parse(to).domain
    except InvalidReference as exc:
        raise InputError(f"--to {to}: {exc}") from None
    options = registry_options(tls, login, host, CopyFlags(jobs=4))
    request = BuildRequest(
        base=base,
        to=to,
        requirements=list(requirements),
        wheels=wheels,
        adds=[AddFile.parse(a) for a in adds],
        base_bundle=base_bundle,
        out=out,
        platform=platform,
    )
    result = build(request, options, step=_step if sys.stderr.isatty() else _silent)
    for note in result.notes:
        warn(note)
    if as_json:
        print_json(result.to_json())
        return
    console = stdout_console()
    py = result.python
    console.print(
        f"base {result.base.canonical} ({result.platform}): Python {py.version} at "
        f"{py.executable}, packages into {py.site_dir}"
    )
    for name, version in result.layer.installed:
        console.print(f"  + {name} {version}")
    for name, old, new in result.layer.replaced:
        console.print(f"  ~ {name} {old} -> {new}")
    for name, version in result.layer.kept:
        console.print(f"  = {name} {version} (already in the base)")
    console.print(
        f"new layer {result.layer.digest} ({result.layer.size / 1e6:.1f} MB, "
        f"{result.layer.files} files); {len(result.base_layers)} base layers unchanged"
    )
    where = f" in {result.output}" if result.output != "registry" else ""
    console.print(f"{result.target.with_digest(None).canonical}@{result.digest}{where}")


def _step(message: str) -> None:
    click.echo(f"kferry: {message}...", err=True)


def _silent(message: str) -> None:
    return None


@click.group()
def wheels() -> None:
    """Wheelhouses for another Python and platform (for pip installs in running notebooks)."""


@wheels.command("save")
@click.option(
    "-r",
    "--requirements",
    "requirements",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="pip requirements file (repeatable).",
)
@click.option("--python", "python", required=True, metavar="X.Y", help="Python version.")
@click.option(
    "--platform", default="linux/amd64", show_default=True, metavar="OS/ARCH", help="Platform."
)
@click.option(
    "--glibc",
    metavar="2.N",
    help="Newest C library the wheels may need (default 2.28; the notebook image's glibc).",
)
@click.option("--musl", is_flag=True, help="The image uses musl (Alpine): musllinux wheels.")
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(path_type=Path), metavar="DIR"
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def wheels_save(
    requirements: tuple[Path, ...],
    python: str,
    platform: str,
    glibc: str | None,
    musl: bool,
    out: Path,
    as_json: bool,
) -> None:
    """Resolve with pip and download every wheel, and write DIR/requirements.lock (hashes)."""
    from kferry.wheels.house import save
    from kferry.wheels.pip import Target

    result = save(list(requirements), Target.parse(python, platform, glibc, musl), out)
    if as_json:
        print_json(result.to_json())
        return
    console = stdout_console()
    for w in result.wheels:
        console.print(f"{w.name} {w.version}  {w.path.name}")
    console.print(
        f"{len(result.wheels)} wheels for {result.target.describe()} in {out}; lock: {result.lock}"
    )
    for name in result.stale:
        warn(f"{out / name} is not in the lock (left from an earlier save?)")


@wheels.command("check")
@click.argument("wheelhouse", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def wheels_check(ctx: click.Context, wheelhouse: Path, as_json: bool) -> None:
    """Check a wheelhouse on the far side: every locked wheel there with its hash, and pip
    installs the lock from it alone. Exit 1 when not."""
    from kferry.wheels.house import check

    result = check(wheelhouse)
    if as_json:
        print_json(result.to_json())
    else:
        console = stdout_console()
        state = "OK" if result.ok else f"NOT OK ({len(result.problems)} problems)"
        console.print(f"{wheelhouse}: {result.pins} wheels for {result.target.describe()}: {state}")
        for p in result.problems:
            console.print(f"  {p}", style="red")
    for name in result.unlocked:
        warn(f"{wheelhouse / name} is not in the lock")
    ctx.exit(0 if result.ok else 1)


def _spawner_options(func: F) -> F:
    func = click.option(
        "--namespace",
        "-n",
        default="kubeflow",
        show_default=True,
        help="Namespace of the Jupyter web app.",
    )(func)
    func = click.option(
        "--configmap",
        metavar="NAME",
        help="The ConfigMap holding spawner_ui_config.yaml (default: the one the web app mounts).",
    )(func)
    return kube_options(func)


GROUP_CHOICE = click.Choice(["jupyter", "vscode", "rstudio"])


def _connect(kubeconfig: Path | None, context: str | None) -> Kube:
    from kferry.kube import Kube  # lightkube: loaded only by the cluster subcommands

    return Kube.connect(kubeconfig, context)


def _check_image(image: str) -> None:
    try:
        parse(image)
    except InvalidReference as exc:
        raise InputError(f"IMAGE {image}: {exc}") from None


def _print_change(change: Change, as_json: bool) -> None:
    for note in change.notes:
        warn(note)
    if as_json:
        print_json(change.to_json())
        return
    where = f"ConfigMap {change.namespace}/{change.configmap}"
    text = {
        "added": f"{change.image}: added to the {change.group} images ({where})",
        "removed": f"{change.image}: removed from the {change.group} images ({where})",
        "unchanged": f"{change.image}: already offered as a {change.group} image ({where})",
        "absent": f"{change.image}: not in the spawner's image lists ({where})",
    }[change.action]
    if change.restarted:
        text += "; jupyter web app restarted"
    stdout_console().print(text)


@notebook.command("add")
@click.argument("image", metavar="IMAGE")
@click.option("--group", type=GROUP_CHOICE, default="jupyter", show_default=True)
@_spawner_options
@click.option("--no-restart", is_flag=True, help="Do not restart the web app.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def add_cmd(
    image: str,
    group: str,
    namespace: str,
    configmap: str | None,
    kubeconfig: Path | None,
    context: str | None,
    no_restart: bool,
    as_json: bool,
) -> None:
    """Offer IMAGE in the Jupyter spawner's image list (comments and formatting kept)."""
    from kferry.notebook import spawner

    _check_image(image)
    kube = _connect(kubeconfig, context)
    try:
        change = spawner.add(
            kube, image, group, namespace=namespace, configmap=configmap, restart=not no_restart
        )
    finally:
        kube.close()
    _print_change(change, as_json)


@notebook.command("remove")
@click.argument("image", metavar="IMAGE")
@click.option("--group", type=GROUP_CHOICE, help="Only from this group (default: every group).")
@_spawner_options
@click.option("--no-restart", is_flag=True, help="Do not restart the web app.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def remove_cmd(
    image: str,
    group: str | None,
    namespace: str,
    configmap: str | None,
    kubeconfig: Path | None,
    context: str | None,
    no_restart: bool,
    as_json: bool,
) -> None:
    """Take IMAGE out of the spawner's image lists."""
    from kferry.notebook import spawner

    kube = _connect(kubeconfig, context)
    try:
        change = spawner.remove(
            kube, image, group, namespace=namespace, configmap=configmap, restart=not no_restart
        )
    finally:
        kube.close()
    _print_change(change, as_json)


@notebook.command("list")
@_spawner_options
@click.option("--json", "as_json", is_flag=True, help="Print the lists as JSON.")
def list_cmd(
    namespace: str,
    configmap: str | None,
    kubeconfig: Path | None,
    context: str | None,
    as_json: bool,
) -> None:
    """The images the Jupyter spawner offers, per group (* marks each group's default)."""
    from kferry.notebook import spawner

    kube = _connect(kubeconfig, context)
    try:
        found, groups = spawner.listing(kube, namespace=namespace, configmap=configmap)
    finally:
        kube.close()
    if as_json:
        print_json(
            {
                "configmap": f"{namespace}/{found.name}",
                "groups": {
                    g: {"default": default, "images": images}
                    for g, (default, images) in groups.items()
                },
            }
        )
        return
    console = stdout_console()
    console.print(f"ConfigMap {namespace}/{found.name}", style="dim")
    for g, (default, images) in groups.items():
        console.print(f"{g}:")
        for image in images:
            console.print(f"  {'*' if image == default else ' '} {image}")
