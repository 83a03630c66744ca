"""``kferry plan``, ``kferry mirror`` and ``kferry bundle save|load|verify``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

from kferry.cli.images import inventory_from
from kferry.cli.output import print_json, stdout_console, warn
from kferry.errors import InputError
from kferry.load.imagelist import parse_image_args, read_image_list
from kferry.name import Reference
from kferry.pipeline import Copy, load_bundle, mirror_images, save_bundle, update_lock
from kferry.plan import LAYOUTS, LOCK_NAME, Target, plan
from kferry.plan.lock import check_lock
from kferry.transfer.copy import ImageResult, Progress
from kferry.transfer.credentials import Credential, Keychain
from kferry.transfer.errors import RegistryError
from kferry.transfer.layout.verify import verify_bundle
from kferry.transfer.transport import Options, ssl_context

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


def registry_options(func: F) -> F:
    opts = [
        click.option(
            "--ca-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Private CA (PEM) to trust in addition to the system CAs.",
        ),
        click.option(
            "--insecure",
            multiple=True,
            metavar="HOST[:PORT]",
            help="Skip TLS verification for this registry (repeatable).",
        ),
        click.option(
            "--plain-http",
            multiple=True,
            metavar="HOST[:PORT]",
            help="Use plain HTTP for this registry (repeatable).",
        ),
        click.option(
            "--jobs",
            "-j",
            type=click.IntRange(1, 64),
            default=8,
            show_default=True,
            help="Parallel transfers.",
        ),
        click.option(
            "--platform",
            "platforms",
            multiple=True,
            metavar="OS/ARCH[/VARIANT]",
            help="Copy only these platforms of multi-arch images (digests change).",
        ),
        click.option(
            "--chunk-size",
            type=click.IntRange(1 << 20),
            default=64 << 20,
            show_default=True,
            metavar="BYTES",
            help="Upload larger blobs in chunks of this size (for proxies that cap bodies).",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def output_option(func: F) -> F:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Summary for people, or JSON.",
    )(func)


def target_options(func: F) -> F:
    opts = [
        click.option(
            "--to",
            "to",
            required=True,
            metavar="REGISTRY[:PORT]/PROJECT",
            help="The private registry and project.",
        ),
        click.option(
            "--layout",
            type=click.Choice(LAYOUTS),
            default="keep",
            show_default=True,
            help="keep: PROJECT/<host>/<path>; drop-host: PROJECT/<path>; "
            "flat: PROJECT/<host__path> (one level).",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def credential_options(func: F) -> F:
    func = click.option(
        "--username",
        metavar="USER",
        help="User for the target registry (password from --password-stdin).",
    )(func)
    return click.option(
        "--password-stdin", is_flag=True, help="Read the target registry password from stdin."
    )(func)


def gather(
    images: Sequence[str], files: Sequence[str], from_paths: Sequence[str]
) -> list[Reference]:
    refs = parse_image_args(list(images), "image")
    for f in files:
        refs += read_image_list(f)
    if from_paths:
        inventory, _ = inventory_from(tuple(from_paths))
        refs += [img.reference for img in inventory.images]
    if not refs:
        raise InputError("no images: give IMAGE arguments, -f LIST or --from PATH")
    return refs


def make_options(
    ca_file: Path | None,
    insecure: Sequence[str],
    plain_http: Sequence[str],
    jobs: int,
    chunk_size: int,
    target_host: str | None = None,
    username: str | None = None,
    password_stdin: bool = False,
) -> Options:
    explicit: dict[str, Credential] = {}
    if password_stdin and not username:
        raise InputError("--password-stdin needs --username")
    if username:
        if not password_stdin:
            raise InputError("--username needs --password-stdin (passwords are never arguments)")
        if target_host is None:
            raise InputError("--username applies to the target registry; give --to")
        password = sys.stdin.readline().rstrip("\r\n")
        explicit[target_host] = Credential(username, password, source="--username/--password-stdin")
    if ca_file is not None:
        if not ca_file.is_file():
            raise InputError(f"--ca-file {ca_file}: no such file")
        try:  # once, up front: not once per image
            ssl_context(ca_file)
        except RegistryError as exc:
            raise InputError(str(exc)) from None
    return Options(
        keychain=Keychain(explicit),
        ca_file=ca_file,
        insecure=frozenset(insecure),
        plain_http=frozenset(plain_http),
        connections=max(16, jobs * 2),
        chunk_size=chunk_size,
    )


class BarProgress(Progress):
    """Rich bars on stderr (bytes and images) when stderr is a terminal."""

    def __init__(self, images: int | None) -> None:
        self.bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=True,
            console=None,
        )
        self.images: TaskID = self.bars.add_task("images", total=images)
        self.bytes: TaskID = self.bars.add_task("bytes ", total=0)
        self._total = 0

    def __enter__(self) -> BarProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def image_started(self, result: ImageResult, size: int) -> None:
        self._total += size
        self.bars.update(self.bytes, total=self._total)

    def image_done(self, result: ImageResult) -> None:
        self.bars.advance(self.images)

    def bytes_done(self, n: int) -> None:
        self.bars.advance(self.bytes, n)


@contextlib.contextmanager
def copying(
    options: Options, jobs: int, platforms: Sequence[str], images: int | None
) -> Iterator[Copy]:
    """How to copy, with progress bars on a terminal (nothing noisy in a pipe)."""
    if not sys.stderr.isatty():
        yield Copy(options, jobs, platforms)
        return
    with BarProgress(images) as bars:
        yield Copy(options, jobs, platforms, bars)


def summarise(results: list[ImageResult], output: str, lock: Path | None) -> int:
    copied = [r for r in results if r.status == "copied"]
    skipped = [r for r in results if r.status == "skipped"]
    failed = [r for r in results if r.status == "failed"]
    sent = sum(r.bytes_sent for r in results)
    saved = sum(r.bytes_skipped for r in results)
    notes = [f"{r.source.canonical}: {n}" for r in results for n in r.notes]
    if output == "json":
        print_json(
            {
                "images": len(results),
                "copied": len(copied),
                "skipped": len(skipped),
                "bytes_sent": sent,
                "bytes_skipped": saved,
                "failures": [
                    {"source": r.source.canonical, "target": r.target.canonical, "error": r.error}
                    for r in failed
                ],
                "notes": notes,
                "lock": str(lock) if lock else None,
            }
        )
    else:
        console = stdout_console()
        console.print(
            f"{len(results)} images: {len(copied)} copied, {len(skipped)} already there, "
            f"{len(failed)} failed; {_mb(sent)} sent, {_mb(saved)} not sent (already there)"
        )
        for n in notes:
            console.print(f"note: {n}", style="yellow")
        for r in failed:
            console.print(
                f"FAILED {r.source.canonical} -> {r.target.canonical}: {r.error}", style="red"
            )
        if lock:
            console.print(f"lock file: {lock}", style="dim")
    return 1 if failed else 0


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@click.command("plan")
@image_inputs
@target_options
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def plan_cmd(
    images: tuple[str, ...],
    files: tuple[str, ...],
    from_paths: tuple[str, ...],
    to: str,
    layout: str,
    output: str,
) -> None:
    """Show where each image goes in the private registry (nothing is copied)."""
    planned = plan(gather(images, files, from_paths), Target.parse(to, layout))
    if output == "json":
        print_json([p.to_json() for p in planned])
        return
    console = stdout_console()
    for p in planned:
        console.print(f"{p.source.canonical} -> {p.target.canonical}", overflow="fold")


@click.command()
@image_inputs
@target_options
@registry_options
@output_option
@credential_options
@click.option(
    "--lock",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Lock file to update (default ./{LOCK_NAME}).",
)
@click.pass_context
def mirror(
    ctx: click.Context,
    images: tuple[str, ...],
    files: tuple[str, ...],
    from_paths: tuple[str, ...],
    to: str,
    layout: str,
    ca_file: Path | None,
    insecure: tuple[str, ...],
    plain_http: tuple[str, ...],
    jobs: int,
    platforms: tuple[str, ...],
    chunk_size: int,
    output: str,
    username: str | None,
    password_stdin: bool,
    lock: Path | None,
) -> None:
    """Copy images registry to registry, byte for byte (digests stay the same)."""
    dest = Target.parse(to, layout)
    options = make_options(
        ca_file, insecure, plain_http, jobs, chunk_size, dest.registry, username, password_stdin
    )
    refs = gather(images, files, from_paths)
    lock_path = lock or Path(LOCK_NAME)
    check_lock(lock_path)
    with copying(options, jobs, platforms, len(refs)) as copy:
        results = mirror_images(refs, dest, copy)
    ctx.exit(summarise(results, output, update_lock(lock_path, results)))


@click.group()
def bundle() -> None:
    """Offline bundles (OCI image layouts) to carry images across the air gap."""


@bundle.command("save")
@image_inputs
@registry_options
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    metavar="OUT",
    help="A directory, or a .tar / .tar.zst file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def bundle_save(
    ctx: click.Context,
    images: tuple[str, ...],
    files: tuple[str, ...],
    from_paths: tuple[str, ...],
    ca_file: Path | None,
    insecure: tuple[str, ...],
    plain_http: tuple[str, ...],
    jobs: int,
    platforms: tuple[str, ...],
    chunk_size: int,
    out: Path,
    as_json: bool,
) -> None:
    """Save images into an OCI layout (every blob once), named by their source reference."""
    options = make_options(ca_file, insecure, plain_http, jobs, chunk_size)
    refs = list(dict.fromkeys(gather(images, files, from_paths)))
    with copying(options, jobs, platforms, len(refs)) as copy:
        results, where = save_bundle(refs, out, copy)
    if any(r.status == "failed" for r in results):
        warn(f"bundle not finished: rerun the same command to resume ({where} kept)")
    ctx.exit(summarise(results, "json" if as_json else "table", None))


@bundle.command("load")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True, path_type=Path))
@target_options
@registry_options
@output_option
@credential_options
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
    to: str,
    layout: str,
    ca_file: Path | None,
    insecure: tuple[str, ...],
    plain_http: tuple[str, ...],
    jobs: int,
    platforms: tuple[str, ...],
    chunk_size: int,
    output: str,
    username: str | None,
    password_stdin: bool,
    lock: Path | None,
    tmp_dir: Path | None,
) -> None:
    """Push a bundle's images into the private registry."""
    dest = Target.parse(to, layout)
    options = make_options(
        ca_file, insecure, plain_http, jobs, chunk_size, dest.registry, username, password_stdin
    )
    lock_path = lock or Path(LOCK_NAME)
    check_lock(lock_path)
    with copying(options, jobs, platforms, None) as copy:
        results = load_bundle(bundle_path, dest, copy, tmp_dir)
    ctx.exit(summarise(results, output, update_lock(lock_path, results)))


@bundle.command("verify")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
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
            f"{_mb(report.bytes)}: {state}"
        )
        for d in report.damage:
            console.print(f"  {d}", style="red")
    ctx.exit(1 if report.damage else 0)
