"""``kferry plan``, ``kferry mirror`` and ``kferry bundle save|load|verify``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

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
from kferry.cli.output import output_option as data_output_option
from kferry.cli.output import print_json, record_format, stdout_console, warn
from kferry.cli.progress import (
    LOAD,
    MIRROR,
    SAVE,
    BarProgress,
    LineProgress,
    Meter,
    Words,
    mb,
    seconds,
)
from kferry.errors import InputError
from kferry.interrupt import EXIT_INTERRUPTED, resume_command
from kferry.load.imagelist import parse_image_args, read_image_list
from kferry.name import Reference
from kferry.pipeline import (
    Copy,
    estimate_size,
    load_bundle,
    mirror_images,
    save_bundle,
    update_lock,
)
from kferry.plan import LAYOUTS, LOCK_NAME, Target, plan
from kferry.plan.lock import check_lock, read_lock
from kferry.plan.shard import Shard
from kferry.transfer.copy import ImageResult, Progress
from kferry.transfer.layout.facts import BundleFacts, bundle_facts
from kferry.transfer.layout.verify import verify_bundle
from kferry.transfer.layout.volumes import parse_size
from kferry.transfer.size import SizeReport
from kferry.transfer.transport import Options

F = TypeVar("F", bound=Callable[..., Any])


def image_inputs(func: F) -> F:
    """IMAGE arguments, ``-f LIST`` and ``--from PATH``: where the images come from."""
    func = click.argument("images", nargs=-1, metavar="[IMAGE]...")(func)
    func = click.option(
        "-f",
        "--file",
        "files",
        multiple=True,
        metavar="LIST",
        help="File with one image per line ('-' for stdin).",
    )(func)
    return click.option(
        "--from",
        "from_paths",
        multiple=True,
        metavar="PATH",
        help="Manifests (file, kustomize dir, '-') whose images to take.",
    )(func)


def output_option(func: F) -> F:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json", "yaml"]),
        default="table",
        show_default=True,
        callback=record_format,
        help="Summary for people, or JSON or YAML.",
    )(func)


def shard_option(func: F) -> F:
    """``--shard I/N``: this host's part of the images (see :mod:`kferry.plan.shard`)."""
    return click.option(
        "--shard",
        metavar="I/N",
        callback=lambda _ctx, _param, value: Shard.parse(value) if value else None,
        help="Copy only part I of N (I from 0, e.g. a Job's JOB_COMPLETION_INDEX); the N "
        "parts are disjoint and together all images. Merge their locks with kferry lock merge.",
    )(func)


def gather(
    images: Sequence[str], files: Sequence[str], from_paths: Sequence[str]
) -> list[Reference]:
    refs = parse_image_args(list(images), "image")
    for f in files:
        refs += read_image_list(f)
    if from_paths:
        from kferry.cli.images import inventory_from  # discovery: only for --from

        inventory, _ = inventory_from(tuple(from_paths))
        refs += [img.reference for img in inventory.images]
    if not refs:
        raise InputError("no images: give IMAGE arguments, -f LIST or --from PATH")
    return refs


@contextlib.contextmanager
def copying(options: Options, transfer: CopyFlags, words: Words = MIRROR) -> Iterator[Copy]:
    """How to copy, with progress on stderr: bars on a terminal, one line per image in a
    pipe or a log (:mod:`kferry.cli.progress`). ``copy.progress`` is the :class:`Meter` the
    summary reads (elapsed time, throughput)."""
    if not sys.stderr.isatty():
        lines = LineProgress(words)
        try:
            yield Copy(
                options, transfer.jobs, transfer.platforms, lines, referrers=transfer.referrers
            )
        finally:
            lines.close()
        return
    with BarProgress(words) as bars:
        yield Copy(options, transfer.jobs, transfer.platforms, bars, referrers=transfer.referrers)


def summarise(
    results: list[ImageResult],
    output: str,
    lock: Path | None,
    meter: Progress | None = None,
    bundle: BundleFacts | None = None,
) -> int:
    """The end summary (stdout), and on an interrupt how to resume (stderr). Returns the exit
    code: 0, 1 when an image failed, 130 when the run was interrupted."""
    words = meter.words if isinstance(meter, Meter) else MIRROR
    elapsed = meter.elapsed() if isinstance(meter, Meter) else 0.0
    copied = [r for r in results if r.status == "copied"]
    skipped = [r for r in results if r.status == "skipped"]
    failed = [r for r in results if r.status == "failed"]
    stopped = [r for r in results if r.status == "interrupted"]
    sent = sum(r.bytes_sent for r in results)
    saved = sum(r.bytes_skipped for r in results)
    rate = sent / elapsed if elapsed > 0 else 0.0
    notes = [f"{r.source.canonical}: {n}" for r in results for n in r.notes]
    referrers = sum(x.status != "failed" for r in results for x in r.referrers)
    if output == "json":
        print_json(
            {
                "images": len(results),
                "copied": len(copied),
                "skipped": len(skipped),
                "interrupted": len(stopped),
                "bytes_sent": sent,
                "bytes_skipped": saved,
                "referrers": referrers,
                "elapsed_seconds": round(elapsed, 3),
                "bytes_per_second": round(rate),
                "failures": [
                    {"source": r.source.canonical, "target": r.target.canonical, "error": r.error}
                    for r in failed
                ],
                "notes": notes,
                "lock": str(lock) if lock else None,
                **({"bundle": bundle.to_json()} if bundle is not None else {}),
            }
        )
    else:
        console = stdout_console()
        cut = f", {len(stopped)} interrupted" if stopped else ""
        console.print(
            f"{len(results)} images: {len(copied)} {words.done}, {len(skipped)} already there, "
            f"{len(failed)} failed{cut}; {mb(sent)} {words.moved} in {seconds(elapsed)} "
            f"({mb(rate)}/s), {mb(saved)} already there"
            + (f"; {referrers} signatures/attestations/SBOMs/referrers lists" if referrers else "")
        )
        for n in notes:
            console.print(f"note: {n}", style="yellow")
        for r in failed:
            console.print(
                f"FAILED {r.source.canonical} -> {r.target.canonical}: {r.error}", style="red"
            )
        if bundle is not None:
            console.print(_bundle_line(bundle), overflow="fold")
        if lock:
            console.print(f"lock file: {lock}", style="dim")
    if stopped:
        done = len(results) - len(stopped) - len(failed)
        kept = f"; the lock file {lock} records them" if lock else ""
        click.echo(
            f"kferry: interrupted: {done} of {len(results)} images complete{kept}. To resume "
            f"(complete images are skipped), run the same command again:\n  {resume_command()}",
            err=True,
        )
        return EXIT_INTERRUPTED
    return 1 if failed else 0


def _bundle_line(b: BundleFacts) -> str:
    if b.kind == "dir":
        return f"bundle: {b.path} (directory, {mb(b.size)})"
    if b.kind == "volumes":
        return (
            f"bundle: {b.path} ({b.volumes} volumes, {mb(b.size)}); sha256 of the volume "
            f"manifest {b.sha256}"
        )
    where = f" (in {b.sha_file.name})" if b.sha_file else ""
    return f"bundle: {b.path} ({mb(b.size)}), sha256 {b.sha256}{where}"


def since_option(func: F) -> F:
    return click.option(
        "--since",
        metavar="OLD",
        help="What the far side already holds: a previous bundle, its lock file, or "
        "REGISTRY/PROJECT (named by --layout).",
    )(func)


def print_size(report: SizeReport, output: str) -> None:
    if output == "json":
        print_json(report.to_json())
        return
    console = stdout_console()
    for i in report.images:
        console.print(f"{i.image}: {mb(i.bytes)}, {mb(i.present_bytes)} there", overflow="fold")
    console.print(
        f"{len(report.images)} images: {mb(report.total_bytes)} unique, "
        f"{mb(report.present_bytes)} already there, {mb(report.to_carry_bytes)} to carry "
        f"({report.to_carry_bytes} bytes)"
    )


@click.command("plan")
@image_inputs
@target_flags
@tls_flags
@copy_flags
@login_flags
@click.option(
    "--size",
    is_flag=True,
    help="Read manifests (no blob) and print the bytes per image and in total, what --to "
    "(and --since) already hold, and what is left to carry.",
)
@since_option
@data_output_option()
def plan_cmd(
    images: tuple[str, ...],
    files: tuple[str, ...],
    from_paths: tuple[str, ...],
    target: Target,
    tls: TlsFlags,
    transfer: CopyFlags,
    login: LoginFlags,
    size: bool,
    since: str | None,
    output: str,
) -> None:
    """Show where each image goes in the private registry (nothing is copied); with --size,
    how many bytes a transfer carries."""
    refs = gather(images, files, from_paths)
    if size:
        options = registry_options(tls, login, target.registry, transfer)
        copy = Copy(options, transfer.jobs, transfer.platforms)
        print_size(estimate_size(refs, copy, target, since, target.layout), output)
        return
    if since is not None:
        raise InputError("--since goes with --size")
    planned = plan(refs, target)
    if output == "json":
        print_json([p.to_json() for p in planned])
        return
    console = stdout_console()
    for p in planned:
        console.print(f"{p.source.canonical} -> {p.target.canonical}", overflow="fold")


@click.command()
@image_inputs
@target_flags
@tls_flags
@copy_flags
@output_option
@login_flags
@click.option(
    "--lock",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Lock file to update (default ./{LOCK_NAME}).",
)
@shard_option
@click.pass_context
def mirror(
    ctx: click.Context,
    images: tuple[str, ...],
    files: tuple[str, ...],
    from_paths: tuple[str, ...],
    target: Target,
    tls: TlsFlags,
    transfer: CopyFlags,
    output: str,
    login: LoginFlags,
    lock: Path | None,
    shard: Shard | None,
) -> None:
    """Copy images registry to registry, byte for byte (digests stay the same)."""
    options = registry_options(tls, login, target.registry, transfer)
    refs = gather(images, files, from_paths)
    if shard is not None:
        refs = shard.select(dict.fromkeys(refs))
    lock_path = lock or Path(LOCK_NAME)
    check_lock(lock_path)
    with copying(options, transfer, MIRROR) as copy:
        results = mirror_images(refs, target, copy, read_lock(lock_path))
    ctx.exit(summarise(results, output, update_lock(lock_path, results), copy.progress))


@click.group()
def bundle() -> None:
    """Offline bundles (OCI image layouts) to carry images across the air gap."""


@bundle.command("save")
@image_inputs
@tls_flags
@copy_flags
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path),
    metavar="OUT",
    help="A directory, or a .tar / .tar.zst file (not needed with --dry-run).",
)
@click.option(
    "--split",
    metavar="SIZE",
    help="Cut the .tar / .tar.zst into numbered volumes of SIZE (4.7G, 25G, 700M) plus "
    "OUT.volumes.json with each volume's size and sha256.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@shard_option
@since_option
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="keep",
    show_default=True,
    help="How the --since REGISTRY/PROJECT names images.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read manifests only and print the size the bundle will have (nothing is written).",
)
@click.pass_context
def bundle_save(
    ctx: click.Context,
    images: tuple[str, ...],
    files: tuple[str, ...],
    from_paths: tuple[str, ...],
    tls: TlsFlags,
    transfer: CopyFlags,
    out: Path | None,
    split: str | None,
    as_json: bool,
    shard: Shard | None,
    since: str | None,
    layout: str,
    dry_run: bool,
) -> None:
    """Save images into an OCI layout (every blob once), named by their source reference.
    A .tar / .tar.zst gets OUT.sha256 beside it, or is cut into volumes with --split.
    With --since OLD, a delta bundle: only what the far side lacks."""
    volume_size = parse_size(split) if split is not None else None
    options = registry_options(tls, transfer=transfer)
    refs = list(dict.fromkeys(gather(images, files, from_paths)))
    if shard is not None:
        refs = shard.select(refs)
    if dry_run:
        copy = Copy(options, transfer.jobs, transfer.platforms)
        report = estimate_size(refs, copy, None, since, layout)
        print_size(report, "json" if as_json else "table")
        return
    if out is None:
        raise click.UsageError("Missing option '-o' / '--output'.")
    with copying(options, transfer, SAVE) as copy:
        results, where = save_bundle(refs, out, copy, volume_size, since, layout)
    finished = all(r.done for r in results)
    if not finished:
        warn(f"bundle not finished: rerun the same command to resume ({where} kept)")
    facts = bundle_facts(where) if finished else None
    ctx.exit(summarise(results, "json" if as_json else "table", None, copy.progress, facts))


@bundle.command("load")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path))
@target_flags
@tls_flags
@copy_flags
@output_option
@login_flags
@click.option(
    "--lock",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Lock file to update (default ./{LOCK_NAME}).",
)
@click.option(
    "--tmp-dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Where a .tar.zst bundle is unpacked while it loads (default: TMPDIR); removed after.",
)
@click.pass_context
def bundle_load(
    ctx: click.Context,
    bundle_path: Path,
    target: Target,
    tls: TlsFlags,
    transfer: CopyFlags,
    output: str,
    login: LoginFlags,
    lock: Path | None,
    tmp_dir: Path | None,
) -> None:
    """Push a bundle's images into the private registry."""
    options = registry_options(tls, login, target.registry, transfer)
    lock_path = lock or Path(LOCK_NAME)
    check_lock(lock_path)
    with copying(options, transfer, LOAD) as copy:
        results = load_bundle(bundle_path, target, copy, tmp_dir)
    ctx.exit(summarise(results, output, update_lock(lock_path, results), copy.progress))


@bundle.command("verify")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path))
@data_output_option()
@click.pass_context
def bundle_verify(ctx: click.Context, bundle_path: Path, output: str) -> None:
    """Re-hash every blob and check every image is complete; exit 1 on damage."""
    report = verify_bundle(bundle_path)
    if output == "json":
        print_json(report.to_json())
    else:
        console = stdout_console()
        state = "OK" if not report.damage else f"DAMAGED ({len(report.damage)} problems)"
        console.print(
            f"{bundle_path}: {report.images} images, {report.blobs} blobs, "
            f"{mb(report.bytes)}: {state}"
        )
        for d in report.damage:
            console.print(f"  {d}", style="red")
    ctx.exit(1 if report.damage else 0)
