"""Flag groups several commands share, each parsed into a small value.

A group is a click decorator that adds its options and hands the command one value instead
of one parameter per flag: ``--to``/``--layout`` become a :class:`~kferry.plan.Target`,
``--ca-file``/``--cert-dir``/``--insecure``/``--plain-http``/``--authfile`` a
:class:`TlsFlags`, ``--jobs``/``--platform``/
``--chunk-size`` a :class:`CopyFlags`, ``--username``/``--password-stdin`` a
:class:`LoginFlags`; :func:`registry_options` turns them into the transfer stage's
:class:`~kferry.transfer.transport.Options`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from kferry.errors import InputError
from kferry.plan import LAYOUTS, Target
from kferry.transfer.credentials import Credential, Keychain
from kferry.transfer.errors import RegistryError
from kferry.transfer.transport import Options, check_ca_file, host_ssl_context

Command = Callable[..., Any]


def _group(
    param: str, names: tuple[str, ...], make: Callable[..., Any], options: list[Any]
) -> Callable[[Command], Command]:
    """A decorator adding ``options`` and passing ``param=make(**their values)``."""

    def decorate(func: Command) -> Command:
        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs[param] = make(**{n: kwargs.pop(n) for n in names})
            return func(*args, **kwargs)

        for opt in reversed(options):
            command = opt(command)
        return command

    return decorate


@dataclass(frozen=True, slots=True)
class TlsFlags:
    """How registries are reached: private CAs (all hosts, or per host from a cert dir), hosts
    without verification or without TLS, and the auth file credentials come from."""

    ca_files: tuple[Path, ...] = ()
    insecure: tuple[str, ...] = ()
    plain_http: tuple[str, ...] = ()
    cert_dirs: tuple[Path, ...] = ()
    authfile: Path | None = None


@dataclass(frozen=True, slots=True)
class CopyFlags:
    """How images are copied: parallel transfers, platform filter, upload chunk size, and
    whether signatures, attestations, SBOMs and OCI referrers come along."""

    jobs: int = 8
    platforms: tuple[str, ...] = ()
    chunk_size: int = 64 << 20
    referrers: bool = True


@dataclass(frozen=True, slots=True)
class LoginFlags:
    """Credentials for the target registry (the password only ever from stdin)."""

    username: str | None = None
    password_stdin: bool = False


def _target(to: str, layout: str, no_project: bool) -> Target:
    """``--to`` must name a project unless ``--no-project`` says the registry has none:
    without one the first component of each target path (the source host under the keep
    layout) would silently become the project, which on Harbor fails later or lands in
    another team's project."""
    target = Target.parse(to, layout)
    if not target.project and not no_project:
        first = {"keep": "source host", "drop-host": "first path component"}.get(
            target.layout.value, "flattened name"
        )
        raise InputError(
            f"--to {to}: no project (expected REGISTRY[:PORT]/PROJECT); without one each "
            f"image's {first} would be taken for the project: name the project, or pass "
            "--no-project if this registry has no projects"
        )
    if target.project and no_project:
        raise InputError(f"--to {to} names project {target.project!r}; drop --no-project")
    return target


target_flags = _group(
    "target",
    ("to", "layout", "no_project"),
    _target,
    [
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
        click.option(
            "--no-project",
            is_flag=True,
            help="--to names a registry without projects (plain distribution): images go "
            "right below the host. Without it a --to without PROJECT is refused.",
        ),
    ],
)
"""``--to``, ``--layout`` and ``--no-project``: passed as ``target``, a
:class:`~kferry.plan.Target`."""

AUTHFILE_HELP = (
    "Credentials file (containers auth.json format). Lookup order: --authfile, else "
    "$REGISTRY_AUTH_FILE (either one is the only file read), else "
    "$XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, "
    "~/.docker/config.json ($DOCKER_CONFIG); --username/--password-stdin go first."
)

tls_flags = _group(
    "tls",
    ("ca_files", "insecure", "plain_http", "cert_dirs", "authfile"),
    TlsFlags,
    [
        click.option(
            "--ca-file",
            "ca_files",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Private CA (PEM) to trust for every registry, in addition to the system CAs "
            "(repeatable).",
        ),
        click.option(
            "--cert-dir",
            "cert_dirs",
            multiple=True,
            type=click.Path(file_okay=False, path_type=Path),
            metavar="DIR",
            help="Per-registry TLS, the certs.d layout: DIR/HOST[:PORT]/*.crt are CAs for that "
            "registry, NAME.cert + NAME.key its client certificate (repeatable).",
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
            "--authfile",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help=AUTHFILE_HELP,
        ),
    ],
)
"""``--ca-file``, ``--cert-dir``, ``--insecure``, ``--plain-http``, ``--authfile``: passed as
``tls``, a :class:`TlsFlags`."""


def _copy(jobs: int, platforms: tuple[str, ...], chunk_size: int, no_referrers: bool) -> CopyFlags:
    return CopyFlags(jobs, platforms, chunk_size, not no_referrers)


copy_flags = _group(
    "transfer",
    ("jobs", "platforms", "chunk_size", "no_referrers"),
    _copy,
    [
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
        click.option(
            "--no-referrers",
            is_flag=True,
            help="Leave signatures, attestations, SBOMs and OCI referrers behind "
            "(copied by default).",
        ),
    ],
)
"""``--jobs``, ``--platform``, ``--chunk-size``, ``--no-referrers``: passed as ``transfer``, a
:class:`CopyFlags`."""

login_flags = _group(
    "login",
    ("username", "password_stdin"),
    LoginFlags,
    [
        click.option(
            "--username",
            metavar="USER",
            help="User for the target registry (password from --password-stdin).",
        ),
        click.option(
            "--password-stdin", is_flag=True, help="Read the target registry password from stdin."
        ),
    ],
)
"""``--username``, ``--password-stdin``: passed as ``login``, a :class:`LoginFlags`."""


def check_trust(tls: TlsFlags) -> None:
    """Every --ca-file and every host of every --cert-dir loaded once, up front (a bad file is
    one error before anything is copied, not one per image)."""
    for ca in tls.ca_files:
        if not ca.is_file():
            raise InputError(f"--ca-file {ca}: no such file")
        try:
            check_ca_file(ca)
        except RegistryError as exc:
            raise InputError(str(exc)) from None
    for directory in tls.cert_dirs:
        if not directory.is_dir():
            raise InputError(f"--cert-dir {directory}: no such directory")
        for here in sorted(p for p in directory.iterdir() if p.is_dir()):
            try:
                host_ssl_context(here.name, Options(cert_dirs=(directory,)))
            except RegistryError as exc:
                raise InputError(str(exc)) from None


def registry_options(
    tls: TlsFlags,
    login: LoginFlags = LoginFlags(),
    target_host: str | None = None,
    transfer: CopyFlags = CopyFlags(),
) -> Options:
    """The flags as transfer options; the password is read from stdin here, once."""
    explicit: dict[str, Credential] = {}
    if login.password_stdin and not login.username:
        raise InputError("--password-stdin needs --username")
    if login.username:
        if not login.password_stdin:
            raise InputError("--username needs --password-stdin (passwords are never arguments)")
        if target_host is None:
            raise InputError("--username applies to the target registry; give --to")
        password = sys.stdin.readline().rstrip("\r\n")
        explicit[target_host] = Credential(
            login.username, password, source="--username/--password-stdin"
        )
    check_trust(tls)
    files = None
    if tls.authfile is not None:
        if not tls.authfile.is_file():
            raise InputError(f"--authfile {tls.authfile}: no such file")
        files = [tls.authfile]
    return Options(
        keychain=Keychain(explicit, files=files),
        ca_files=tls.ca_files,
        cert_dirs=tls.cert_dirs,
        insecure=frozenset(tls.insecure),
        plain_http=frozenset(tls.plain_http),
        connections=max(16, transfer.jobs * 2),
        chunk_size=transfer.chunk_size,
    )
