"""``kferry login REGISTRY`` and ``kferry logout REGISTRY`` (containers auth.json)."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click

from kferry.cli.flags import AUTHFILE_HELP, TlsFlags, registry_options
from kferry.errors import InputError, KferryError
from kferry.name import InvalidReference, parse
from kferry.transfer.credentials import Credential, primary_auth_file
from kferry.transfer.login import check_credentials, remove_login, save_login


def _host(registry: str) -> str:
    """``harbor.corp:8443`` (a scheme or a trailing path, as people paste them, dropped)."""
    host = registry.split("://", 1)[-1].split("/", 1)[0].lower()
    try:
        ok = bool(host) and parse(f"{host}/x").domain == host
    except InvalidReference:
        ok = False
    if not ok:
        raise InputError(f"REGISTRY {registry!r}: not a registry host[:port]")
    return host


def _authfile_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--authfile",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Write here instead of $REGISTRY_AUTH_FILE or "
        "$XDG_RUNTIME_DIR/containers/auth.json. " + AUTHFILE_HELP.split(". ", 1)[1],
    )(func)


@click.command("login")
@click.argument("registry")
@click.option("--username", "-u", metavar="USER", help="User name (asked for on a terminal).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@_authfile_option
@click.option(
    "--ca-file",
    "ca_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private CA (PEM) to trust (repeatable).",
)
@click.option(
    "--cert-dir",
    "cert_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="certs.d layout: DIR/HOST[:PORT]/*.crt (repeatable).",
)
@click.option("--insecure", is_flag=True, help="Skip TLS verification for this registry.")
@click.option("--plain-http", is_flag=True, help="This registry speaks plain HTTP.")
def login(
    registry: str,
    username: str | None,
    password_stdin: bool,
    authfile: Path | None,
    ca_files: tuple[Path, ...],
    cert_dirs: tuple[Path, ...],
    insecure: bool,
    plain_http: bool,
) -> None:
    """Check credentials against REGISTRY (Basic or token auth), then save them in auth.json
    (mode 0600), where every kferry command, skopeo and podman find them."""
    host = _host(registry)
    tty = sys.stdin.isatty()
    if username is None:
        if password_stdin or not tty:
            raise InputError("--username is needed when the password comes from stdin")
        username = input("Username: ").strip()
    if not username:
        raise InputError("--username: empty user name")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif tty:
        password = getpass.getpass("Password: ")
    else:
        raise InputError("stdin is not a terminal: pass the password with --password-stdin")
    if not password:
        raise InputError("empty password")
    tls = TlsFlags(
        ca_files=ca_files,
        cert_dirs=cert_dirs,
        insecure=(host,) if insecure else (),
        plain_http=(host,) if plain_http else (),
    )
    credential = Credential(username, password, source="kferry login")
    check_credentials(host, credential, registry_options(tls))
    path = primary_auth_file(authfile)
    save_login(path, host, credential)
    click.echo(f"Login succeeded: {username} at {host}, saved in {path}")


@click.command("logout")
@click.argument("registry")
@_authfile_option
def logout(registry: str, authfile: Path | None) -> None:
    """Remove REGISTRY's credentials from auth.json."""
    host = _host(registry)
    path = primary_auth_file(authfile)
    if not remove_login(path, host):
        raise KferryError(f"not logged in to {host} in {path}; nothing removed")
    click.echo(f"Removed the credentials for {host} from {path}")
