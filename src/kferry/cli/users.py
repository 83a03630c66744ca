"""``kferry users``: add, list, remove and check Kubeflow users (a Profile and a Dex password
each; check logs one in through the whole chain)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from kferry.cli.options import DURATION, kube_options
from kferry.cli.output import output_option, print_json, stdout_console, warn
from kferry.errors import InputError
from kferry.kube import Kube
from kferry.users import (
    DEFAULT_NAMESPACE,
    AddResult,
    RemoveResult,
    add_user,
    check_email,
    check_password,
    list_users,
    read_password,
    remove_user,
)
from kferry.users.check import LoginResult, check_login
from kferry.users.names import check_profile_name
from kferry.users.pullsecret import PullSecretResult, grant, source_secret
from kferry.users.service import Restart

F = TypeVar("F", bound=Callable[..., Any])


def _dex_options(func: F) -> F:
    return click.option(
        "--dex-namespace",
        default=DEFAULT_NAMESPACE,
        show_default=True,
        metavar="NS",
        help="Where Dex runs (its Deployment, ConfigMap and Secrets are named dex, dex, "
        "dex-passwords in every Kubeflow release).",
    )(func)


def _timeout_option(func: F) -> F:
    return click.option(
        "--timeout",
        type=DURATION,
        default="5m",
        show_default=True,
        metavar="D",
        help="How long to wait for Dex's rollout after its restart (only where the cluster "
        "has nodes).",
    )(func)


def _output_option(func: F) -> F:
    return output_option()(func)


def _ask_password(email: str, from_stdin: bool, confirm: bool = True) -> str:
    if from_stdin:
        return read_password(sys.stdin.buffer)
    if not sys.stdin.isatty():
        raise InputError("no terminal to ask for the password on: pipe it in with --password-stdin")
    password: str = click.prompt(
        f"Password for {email}", hide_input=True, confirmation_prompt=confirm, err=True
    )
    return check_password(password)


def _restart_line(restart: Restart) -> str:
    if not restart.restarted:
        return "Dex: not restarted (its configuration did not change)"
    if restart.rollout == "complete":
        return "Dex: restarted, rollout complete"
    return f"Dex: restarted; not waiting for the rollout: {restart.note}"


def _print_add(result: AddResult, output: str, granted: PullSecretResult | None) -> None:
    if granted is not None and granted.missing:
        warn(
            f"pull secret {granted.secret}: {', '.join(granted.missing)} not there yet (the "
            "profile controller creates them); run the same command again later"
        )
    if output == "json":
        data = result.to_json()
        if granted is not None:
            data["pullSecret"] = granted.to_json()
        print_json(data)
        return
    profile = (
        f"Profile {result.profile} ({result.api_version}): "
        + ("created" if result.profile_created else "exists")
        + f", owner {result.email}; namespace {result.profile}"
    )
    click.echo(profile)
    click.echo(f"Dex static password: {result.dex} ({result.dex_detail})")
    click.echo(_restart_line(result.restart))
    if granted is not None and granted.copied:
        accounts = ", ".join(granted.accounts) or "no service account yet"
        click.echo(
            f"pull secret {granted.secret}: copied into {granted.namespace}; "
            f"imagePullSecrets on {accounts}"
        )


def _print_remove(result: RemoveResult, output: str) -> None:
    if output == "json":
        print_json(result.to_json())
        return
    for name in result.profiles:
        gone = " and its namespace" if name in result.namespaces else ""
        click.echo(f"Profile {name}{gone}: deleted")
    for name in result.kept_namespaces:
        warn(f"namespace {name} is not owned by the Profile {name}: left in place")
    click.echo(f"Dex static password: {result.dex}")
    click.echo(_restart_line(result.restart))


@click.group("users")
def users() -> None:
    """Kubeflow users: a Profile (and its namespace) and a Dex static password each.

    Dex's two Kubeflow layouts are both handled and told apart from what the cluster has:
    the hash inline in the dex ConfigMap (Kubeflow 1.4) or hashFromEnv with the hash in the
    dex-passwords Secret (1.9 and later). Dex is restarted after every change.
    """


@users.command("add")
@click.argument("email")
@click.option("--profile", metavar="NAME", help="Profile name (default: made from the email).")
@click.option("--username", metavar="U", help="Dex username (default: the email's local part).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option(
    "--reset-password", is_flag=True, help="Replace the Dex password of a user who has one."
)
@click.option(
    "--pull-secret",
    metavar="NAME",
    help="Copy this registry Secret into the user's namespace and add it to the "
    "profile's service accounts.",
)
@click.option(
    "--pull-secret-from",
    metavar="NS",
    default="kubeflow",
    show_default=True,
    help="Where the --pull-secret Secret is.",
)
@_dex_options
@_timeout_option
@_output_option
@kube_options
def add(
    email: str,
    profile: str | None,
    username: str | None,
    password_stdin: bool,
    reset_password: bool,
    pull_secret: str | None,
    pull_secret_from: str,
    dex_namespace: str,
    timeout: float,
    output: str,
    kubeconfig: Path | None,
    context: str | None,
) -> None:
    """Create EMAIL's Profile and Dex static password, then restart Dex.

    \b
    kferry users add alice@example.com                         # asks for the password
    kferry users add alice@example.com --password-stdin < pw.txt -o json

    The password is asked for without echo, or read from stdin; it is never an argument and
    never printed. Adding a user again with the same password changes nothing; with another
    password it fails (exit code 2) unless --reset-password. If updating Dex fails after the
    Profile was created, the Profile is deleted and Dex's objects restored (exit code 1).

    Exit codes: 0 done (or nothing to do), 1 the cluster refused or Dex's rollout failed,
    2 bad usage or input, a different existing password, a Profile name owned by someone else.
    """
    check_email(email)
    if profile is not None:
        check_profile_name(profile)
    password = _ask_password(email, password_stdin)
    kube = Kube.connect(kubeconfig, context)
    try:
        secret = source_secret(kube, pull_secret, pull_secret_from) if pull_secret else None
        result = add_user(
            kube,
            email,
            password,
            profile=profile,
            username=username,
            reset_password=reset_password,
            dex_namespace=dex_namespace,
            timeout=timeout,
        )
        granted = grant(kube, secret, result.profile, timeout) if secret is not None else None
    finally:
        kube.close()
    _print_add(result, output, granted)


@users.command("list")
@_dex_options
@_output_option
@kube_options
def list_cmd(dex_namespace: str, output: str, kubeconfig: Path | None, context: str | None) -> None:
    """Every user: Profile owners and Dex static passwords, with their Profile and namespace.

    -o json: [{"email", "profile", "namespace", "dex"}]; profile and namespace are null for a
    Dex entry without a Profile, dex is false for a Profile owner without a Dex entry.
    """
    kube = Kube.connect(kubeconfig, context)
    try:
        listing = list_users(kube, dex_namespace=dex_namespace)
    finally:
        kube.close()
    for text in listing.warnings:
        warn(text)
    if output == "json":
        print_json([row.to_json() for row in listing.rows])
        return
    console = stdout_console()
    if not listing.rows:
        console.print("no users", style="dim")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("EMAIL", "PROFILE", "NAMESPACE", "DEX"):
        table.add_column(column, no_wrap=True)
    for row in listing.rows:
        table.add_row(
            row.email,
            row.profile or "-",
            row.namespace or "-",
            Text("yes", style="green") if row.dex else Text("no", style="yellow"),
        )
    console.print(table)


@users.command("remove")
@click.argument("email")
@_dex_options
@_timeout_option
@_output_option
@kube_options
def remove(
    email: str,
    dex_namespace: str,
    timeout: float,
    output: str,
    kubeconfig: Path | None,
    context: str | None,
) -> None:
    """Remove EMAIL's Dex static password and every Profile it owns (with its namespace).

    Exit codes: 0 removed, 1 no such user or the cluster refused, 2 bad usage.
    """
    check_email(email)
    kube = Kube.connect(kubeconfig, context)
    try:
        result = remove_user(kube, email, dex_namespace=dex_namespace, timeout=timeout)
    finally:
        kube.close()
    _print_remove(result, output)


def _print_check(result: LoginResult, output: str) -> None:
    if output == "json":
        print_json(result.to_json())
        return
    console = stdout_console()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("#", "STEP", "REQUEST", "HOST", "STATUS", "NOTE"):
        table.add_column(column, overflow="fold")
    failed_at = result.failure.hop if result.failure else 0
    for i, hop in enumerate(result.hops, 1):
        status = Text(str(hop.status) if hop.status is not None else "-")
        if i == failed_at:
            status.stylize("bold red")
        table.add_row(str(i), hop.step, f"{hop.method} {hop.path}", hop.host, status, hop.note)
    console.print(table)
    if result.failure is None:
        spaces = ", ".join(f"{n['namespace']} ({n['role']})" for n in result.namespaces)
        console.print(Text(f"logged in as {result.user}; namespaces: {spaces}", style="green"))
        return
    f = result.failure
    console.print(Text(f"login failed at hop {f.hop} ({f.step}): {f.message}", style="red"))
    console.print(f"fix: {f.fix}")


@users.command("check")
@click.argument("email")
@click.option(
    "--url", required=True, metavar="URL", help="The Kubeflow site, as a browser opens it."
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private CA (PEM) to trust for the site, in addition to the system CAs.",
)
@click.option(
    "--timeout", type=DURATION, default="30s", show_default=True, metavar="D", help="Per request."
)
@_output_option
@click.pass_context
def check(
    ctx: click.Context,
    email: str,
    url: str,
    password_stdin: bool,
    ca_file: Path | None,
    timeout: float,
    output: str,
) -> None:
    """Log in as EMAIL the way a browser does and say which hop breaks.

    \b
    kferry users check alice@example.com --url https://kubeflow.example.com --ca-file ca.pem
    kferry users check alice@example.com --url http://10.0.0.5:8080 --password-stdin < pw

    Follows the gateway's redirect to the auth service (oauth2-proxy or oidc-authservice) and
    to Dex, submits Dex's login form, follows the callback with the session cookie, then asks
    the central dashboard who it is (/api/workgroup/env-info): the user the platform sees and
    the namespaces they may use. Every hop is printed (step, request path, host, status);
    a failure names its hop and what to fix. The password is asked for without echo, or read
    from stdin, and goes only to the login form (over plain HTTP only when --url says http).

    Exit codes: 0 logged in with a namespace, 1 the login failed (the hop says where),
    2 bad usage.
    """
    check_email(email)
    if ca_file is not None and not ca_file.is_file():
        raise InputError(f"--ca-file {ca_file}: no such file")
    password = _ask_password(email, password_stdin, confirm=False)
    result = check_login(url, email, password, ca_file=ca_file, timeout=timeout)
    _print_check(result, output)
    ctx.exit(0 if result.ok else 1)
