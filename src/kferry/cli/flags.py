"""Flag groups several commands share, each parsed into a small value.

A group is a click decorator that adds its options and hands the command one value instead
of one parameter per flag: ``--to``/``--layout`` become a :class:`~kferry.plan.Target`,
``--ca-file``/``--insecure``/``--plain-http`` a :class:`TlsFlags`, ``--jobs``/``--platform``/
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
from kferry.transfer.transport import Options, ssl_context

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
    """How registries are reached: a private CA, hosts without verification or without TLS."""

    ca_file: Path | None = None
    insecure: tuple[str, ...] = ()
    plain_http: tuple[str, ...] = ()


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


def _target(to: str, layout: str) -> Target:
    return Target.parse(to, layout)


target_flags = _group(
    "target",
    ("to", "layout"),
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
    ],
)
"""``--to`` and ``--layout``: passed as ``target``, a :class:`~kferry.plan.Target`."""

tls_flags = _group(
    "tls",
    ("ca_file", "insecure", "plain_http"),
    TlsFlags,
    [
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
    ],
)
"""``--ca-file``, ``--insecure``, ``--plain-http``: passed as ``tls``, a :class:`TlsFlags`."""


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
    if tls.ca_file is not None:
        if not tls.ca_file.is_file():
            raise InputError(f"--ca-file {tls.ca_file}: no such file")
        try:  # once, up front: not once per image
            ssl_context(tls.ca_file)
        except RegistryError as exc:
            raise InputError(str(exc)) from None
    return Options(
        keychain=Keychain(explicit),
        ca_file=tls.ca_file,
        insecure=frozenset(tls.insecure),
        plain_http=frozenset(tls.plain_http),
        connections=max(16, transfer.jobs * 2),
        chunk_size=transfer.chunk_size,
    )
