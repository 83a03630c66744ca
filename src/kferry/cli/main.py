"""The ``kferry`` command: parses arguments, calls the stages, prints. Nothing else."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from kferry import __version__, interrupt, scratch
from kferry.cli.examples import attach as _attach_examples
from kferry.errors import KferryError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

# command name -> ("module:attribute", one-line help). Modules are imported only for the
# command that runs; the one-line help is here so that ``kferry --help`` lists every command
# without importing any (the command modules pull in rich, httpx, lightkube: 0.6 s together).
COMMANDS: dict[str, tuple[str, str]] = {
    "airgap": (
        "kferry.cli.rewrite:airgap",
        "Discover, copy (or bundle), rewrite and fix in one command.",
    ),
    "apply": ("kferry.cli.apply:apply", "Server-side apply in dependency order, then wait."),
    "bundle": ("kferry.cli.transfer:bundle", "Offline bundles (OCI image layouts)."),
    "catalog": ("kferry.cli.catalog:catalog", "List the compiled-in defaults kferry knows."),
    "completion": ("kferry.cli.main:completion", "Shell completion script: bash, zsh, fish."),
    "doctor": ("kferry.cli.doctor:doctor", "Check a cluster for known air-gap problems."),
    "help": ("kferry.cli.main:help_cmd", "Topics: exit-codes."),
    "images": ("kferry.cli.images:images", "List every image the manifests need."),
    "lock": ("kferry.cli.lock:lock", "Lock files: merge the shards' lock files."),
    "login": ("kferry.cli.login:login", "Check and save registry credentials (auth.json)."),
    "logout": ("kferry.cli.login:logout", "Remove saved registry credentials."),
    "mirror": ("kferry.cli.transfer:mirror", "Copy images registry to registry, byte for byte."),
    "mirror-config": (
        "kferry.cli.rewrite:mirror_config",
        "Registry mirror configuration for the nodes.",
    ),
    "notebook": ("kferry.cli.notebook:notebook", "Custom notebook images for the spawner."),
    "plan": ("kferry.cli.transfer:plan_cmd", "Show where each image goes."),
    "report": ("kferry.cli.report:report", "A self-contained report for the approvers."),
    "rewrite": ("kferry.cli.rewrite:rewrite", "Point every image at the private registry."),
    "status": ("kferry.cli.status:status", "Is each InferenceService ready, failed, deploying?"),
    "users": ("kferry.cli.users:users", "Kubeflow users: Profiles and Dex passwords."),
    "wheels": ("kferry.cli.notebook:wheels", "Wheelhouses for another Python and platform."),
}

EXIT_CODES = """\b
Exit codes (every command):
  0    done; nothing found (doctor), no differences (images --diff)
  1    runtime trouble (a registry or cluster refused, a copy failed, damage found,
       doctor findings, differences with images --diff --exit-code); the message says
       what to do
  2    bad input or usage: a file, document or option is wrong (the message names it)
  3    status --wait: --timeout passed while something was still deploying
  130  interrupted (Ctrl-C)"""


class _Listed(click.Command):
    """A command as ``kferry --help`` lists it: its name and one-line help, not loaded."""


class LazyGroup(click.Group):
    """click's documented pattern for subcommands loaded on first use ("lazy loading
    subcommands" in click's docs), with the one-line help kept in :data:`COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, attr = entry[0].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        _attach_examples(command, cmd_name)
        return command

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Subcommand names from the table (loading none), then the group's options."""
        from click.shell_completion import CompletionItem

        items = [
            CompletionItem(name, help=help_)
            for name, (_, help_) in sorted(COMMANDS.items())
            if name.startswith(incomplete)
        ]
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from kferry.catalog.about import about  # reads one small YAML file

    info = about()
    click.echo(f"kferry {__version__}")
    click.echo(f"catalog {info.date}: {info.coverage}")
    ctx.exit(0)


def _setup(ctx: click.Context, verbose: int, debug: bool, no_color: bool) -> None:
    if no_color:
        os.environ["NO_COLOR"] = "1"  # rich's Consoles (stdout and the progress on stderr)
    if verbose or debug:
        from kferry.logs import setup_logging

        setup_logging(debug=debug, verbose=verbose)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show kferry's version and its catalog's date and coverage, and exit.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log each request (method, URL, status) and retry on stderr.",
)
@click.option(
    "--debug",
    is_flag=True,
    help="Log more (connections, TLS, every step) on stderr. Secrets are never logged.",
)
@click.option("--no-color", is_flag=True, help="No colours (same as NO_COLOR=1).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool, no_color: bool) -> None:
    """Take Kubeflow across the air gap.

    Find every image a Kubeflow installation needs, copy it into a private registry byte for
    byte, rewrite the manifests, install them, and run day-2 work.
    """
    _setup(ctx, verbose, debug, no_color)


_attach_examples(cli, "")


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (click's shell completion)."""
    from click.shell_completion import get_completion_class

    comp_cls = get_completion_class(shell)
    if comp_cls is None:  # pragma: no cover - the three choices are click's own
        raise click.UsageError(f"no completion for {shell}")
    comp = comp_cls(cli, {}, "kferry", "_KFERRY_COMPLETE")
    click.echo(comp.source())


@click.command("help")
@click.argument("topic", type=click.Choice(["exit-codes"]))
def help_cmd(topic: str) -> None:
    """Help on a topic: exit-codes (what each exit code of every command means)."""
    click.echo(EXIT_CODES.removeprefix("\b\n"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: maps kferry errors to one line on stderr and their exit code."""
    args = list(argv) if argv is not None else sys.argv[1:]
    interrupt.set_command(args)
    code = _main(args)
    interrupt.end_if_abandoned(code)  # workers left inside requests after a Ctrl-C
    return code


def _main(args: list[str]) -> int:
    scratch.install_signal_cleanup()
    try:
        rv = cli.main(args=args, prog_name="kferry", standalone_mode=False)
    except KferryError as exc:
        from kferry.cli.output import printable  # only on the error path (rich is heavy)

        click.echo(f"kferry: error: {printable(str(exc))}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("kferry: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (| head): not an error; keep Python from complaining at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        click.echo("kferry: interrupted", err=True)
        return 130
    except OSError as exc:  # the last net: a file system refusing (ENOSPC, EROFS, EIO...)
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"kferry: error: {where}{exc.strerror or exc}", err=True)
        return 1
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
