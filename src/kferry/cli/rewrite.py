"""``kferry rewrite``, ``kferry mirror-config`` and ``kferry airgap``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kferry import pipeline
from kferry.atomic import atomic_write
from kferry.cli.flags import (
    CopyFlags,
    LoginFlags,
    TlsFlags,
    copy_flags,
    login_flags,
    registry_options,
    target_flags,
    tls_flags,
)
from kferry.cli.images import inventory_from, inventory_of, warn_assumptions
from kferry.cli.options import catalog_from, catalog_option
from kferry.cli.output import stdout_console, warn
from kferry.cli.progress import LOAD, MIRROR, SAVE
from kferry.cli.transfer import copying, image_inputs, summarise
from kferry.errors import InputError
from kferry.fix import FIX_NAMES
from kferry.interrupt import EXIT_INTERRUPTED
from kferry.load import read_sources
from kferry.load.imagelist import parse_image_args, read_image_list
from kferry.pipeline import RewriteOutcome, rewrite_manifests
from kferry.plan import LOCK_NAME, Target, read_lock
from kferry.plan.nodes import containerd_hosts, credential_note, crio_registries, source_hosts
from kferry.transfer.layout.facts import bundle_facts


def _report(
    outcome: RewriteOutcome, to: Target, quiet: bool = False, assumptions: bool = True
) -> None:
    """What changed, on stderr (stdout may be the manifests)."""
    if assumptions and not quiet:
        warn_assumptions(outcome.assumptions)
    lines = [f"rewrote {outcome.references} image references to {to}"]
    for f in outcome.overridden:
        ov = f.override
        assert ov is not None and f.reference is not None
        lines.append(
            f"  {f.location.object}: {ov.kind} {ov.name} now names the mirrored "
            f"{f.reference.canonical} (compiled-in default)"
        )
    by_fix: dict[str, list[str]] = {}
    for change in outcome.fixes:
        by_fix.setdefault(change.fix, []).append(f"{change.object}: {change.what}")
    for fix, items in by_fix.items():
        lines.append(f"fix {fix}: {len(items)} changes")
        lines += [f"  {i}" for i in items]
    for note in outcome.notes:
        lines.append(f"note: {note}")
    for f in outcome.needs_mirror_config:
        assert f.reference is not None
        why = (
            f"and this version does not read {f.ignored_override}"
            if f.ignored_override
            else "and offers no override"
        )
        lines.append(
            f"needs node mirror configuration: {f.reference.canonical} ({f.location.object} "
            f"pulls it by compiled-in default {why}); see kferry mirror-config"
        )
    for p in outcome.problems:
        lines.append(f"warning: {p}")
    if not quiet:
        click.echo("\n".join(lines), err=True)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write(out, text.encode())


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATH|-]...")
@target_flags
@click.option(
    "--lock",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Lock file from mirror / bundle load: targets and digests as copied.",
)
@click.option("--pin-digests", is_flag=True, help="Write target@sha256:... from the lock file.")
@click.option(
    "--fix",
    "fix_on",
    multiple=True,
    metavar="NAME[=VALUE]",
    help=f"Apply a fix ({', '.join(FIX_NAMES)}).",
)
@click.option("--no-fix", "fix_off", multiple=True, metavar="NAME", help="Skip a default fix.")
@click.option(
    "--pull-secret",
    metavar="NAME",
    help="Same as --fix pull-secret=NAME: imagePullSecrets NAME where images are pulled.",
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (atomically) instead of stdout.",
)
@catalog_option
def rewrite(
    paths: tuple[str, ...],
    target: Target,
    lock: Path | None,
    pin_digests: bool,
    fix_on: tuple[str, ...],
    fix_off: tuple[str, ...],
    pull_secret: str | None,
    out: Path | None,
    catalogs: tuple[str, ...],
) -> None:
    """Point every image reference at the private registry, and apply the known fixes.

    Only the references (and what a fix names) change; every other byte stays as it was.
    """
    if lock is not None and not lock.exists():
        raise InputError(f"--lock {lock}: no such file")
    lock_entries = read_lock(lock) if lock else None
    if pin_digests and lock is None:
        lock = Path(LOCK_NAME)
        if not lock.exists():
            raise InputError("--pin-digests needs the lock file (--lock, or ./kferry.lock.json)")
        lock_entries = read_lock(lock)
    sources = read_sources(paths or ("-",))
    if pull_secret:
        fix_on = (*fix_on, f"pull-secret={pull_secret}")
    catalog = catalog_from(catalogs)
    outcome = rewrite_manifests(
        sources,
        target,
        lock_entries,
        pin_digests,
        fix_on,
        fix_off,
        catalog,
        lock_name=str(lock) if lock else None,
    )
    _write(outcome.text, out)
    _report(outcome, target)


@click.command("mirror-config")
@image_inputs
@target_flags
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["containerd", "crio"]),
    default="containerd",
    show_default=True,
)
@click.option("--ca-path", metavar="PATH", help="Where nodes keep the registry CA (containerd).")
@click.option(
    "--plain-http",
    multiple=True,
    metavar="HOST[:PORT]",
    help="The private registry speaks plain HTTP (name the --to registry; repeatable).",
)
@click.option(
    "--username",
    metavar="USER",
    help="The private registry asks for credentials: say what each node must hold.",
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write (containerd: DIR/<host>/hosts.toml).",
)
@catalog_option
def mirror_config(
    images: tuple[str, ...],
    files: tuple[str, ...],
    from_paths: tuple[str, ...],
    target: Target,
    fmt: str,
    ca_path: str | None,
    plain_http: tuple[str, ...],
    username: str | None,
    out: Path | None,
    catalogs: tuple[str, ...],
) -> None:
    """Registry mirror configuration for the nodes (containerd hosts.toml or CRI-O).

    Credentials never go in these files (neither format can hold them): with --username it
    says what each node must hold instead.
    """
    dest = target
    http = dest.registry in plain_http
    others = sorted(set(plain_http) - {dest.registry})
    if others:
        raise InputError(
            f"--plain-http {others[0]}: mirror-config only writes the --to registry "
            f"({dest.registry})"
        )
    refs = parse_image_args(list(images), "image")
    for f in files:
        refs += read_image_list(f)
    if from_paths:
        inventory, _ = inventory_from(tuple(from_paths), catalog_from(catalogs))
        refs += [img.reference for img in inventory.images]
    hosts = [h for h in source_hosts(refs) if h != dest.registry]
    if fmt == "containerd":
        files_out = containerd_hosts(hosts, dest, ca_path, plain_http=http)
    else:
        files_out = {"kferry-mirrors.conf": crio_registries(hosts, dest, plain_http=http)}
    if username:
        click.echo(f"kferry: {credential_note(fmt, dest.registry, username)}", err=True)
    if out is None:
        base = (
            "/etc/containerd/certs.d"
            if fmt == "containerd"
            else "/etc/containers/registries.conf.d"
        )
        for name, text in files_out.items():
            sys.stdout.write(f"# {base}/{name}\n{text}\n")
        return
    for name, text in files_out.items():
        atomic_write(out / name, text.encode())
    click.echo(f"wrote {len(files_out)} files under {out}", err=True)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@target_flags
@tls_flags
@copy_flags
@login_flags
@click.option(
    "--bundle",
    "bundle_out",
    type=click.Path(path_type=Path),
    help="Connected side: save the images into this bundle instead of copying.",
)
@click.option(
    "--load",
    "bundle_in",
    type=click.Path(exists=True, path_type=Path),
    help="Private side: push the images from this bundle.",
)
@click.option("--fix", "fix_on", multiple=True, metavar="NAME[=VALUE]")
@click.option("--no-fix", "fix_off", multiple=True, metavar="NAME")
@click.option("--pin-digests", is_flag=True, help="Write target@sha256:... references.")
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rewritten manifests.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@catalog_option
@click.pass_context
def airgap(
    ctx: click.Context,
    paths: tuple[str, ...],
    target: Target,
    tls: TlsFlags,
    transfer: CopyFlags,
    login: LoginFlags,
    bundle_out: Path | None,
    bundle_in: Path | None,
    fix_on: tuple[str, ...],
    fix_off: tuple[str, ...],
    pin_digests: bool,
    out: Path,
    as_json: bool,
    catalogs: tuple[str, ...],
) -> None:
    """Discover, copy (or bundle), rewrite and fix in one command.

    Writes the rewritten manifests to OUT and kferry.lock.json beside it.
    """
    if bundle_out and bundle_in:
        raise InputError("--bundle and --load exclude each other")
    sources = read_sources(paths)
    catalog = catalog_from(catalogs)
    inventory = inventory_of(sources, catalog)[0] if not bundle_in else None
    refs = [img.reference for img in inventory.images] if inventory is not None else []
    options = registry_options(tls, login, None if bundle_out else target.registry, transfer)
    words = LOAD if bundle_in else SAVE if bundle_out else MIRROR
    with copying(options, transfer, words) as copy:
        done = pipeline.airgap(
            sources,
            target,
            copy,
            out,
            refs,
            bundle_out=bundle_out,
            bundle_in=bundle_in,
            pin=pin_digests,
            fix_on=fix_on,
            fix_off=fix_off,
            catalog=catalog,
        )
    facts = bundle_facts(done.bundle) if done.bundle is not None else None
    code = summarise(done.results, "json" if as_json else "table", done.lock, copy.progress, facts)
    if done.rewrite is not None:
        _report(done.rewrite, target, assumptions=inventory is None)  # else said by inventory_of
        if not as_json:
            stdout_console().print(f"manifests: {out}", style="dim")
    elif code != EXIT_INTERRUPTED:  # an interrupt was explained by summarise
        warn("copy failed: the manifests were not rewritten; fix the failures and rerun")
    ctx.exit(code)
