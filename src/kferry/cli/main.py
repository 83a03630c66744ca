"""The ``kferry`` command: parses arguments, calls the stages, prints. Nothing else."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from kferry import __version__, scratch
from kferry.errors import KferryError

# command name -> "module:attribute"; modules are imported only for the command that runs
# (the cluster commands pull in lightkube, which would otherwise cost every command 0.25 s)
COMMANDS = {
    "images": "kferry.cli.images:images",
    "catalog": "kferry.cli.catalog:catalog",
    "plan": "kferry.cli.transfer:plan_cmd",
    "mirror": "kferry.cli.transfer:mirror",
    "bundle": "kferry.cli.transfer:bundle",
    "rewrite": "kferry.cli.rewrite:rewrite",
    "mirror-config": "kferry.cli.rewrite:mirror_config",
    "airgap": "kferry.cli.rewrite:airgap",
    "apply": "kferry.cli.apply:apply",
    "doctor": "kferry.cli.doctor:doctor",
    "status": "kferry.cli.status:status",
    "users": "kferry.cli.users:users",
    "notebook": "kferry.cli.notebook:notebook",
    "wheels": "kferry.cli.notebook:wheels",
    "report": "kferry.cli.report:report",
}


class LazyGroup(click.Group):
    """click's documented pattern for subcommands loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="kferry")
def cli() -> None:
    """Take Kubeflow across the air gap.

    Find every image a Kubeflow installation needs, copy it into a private registry byte for
    byte, rewrite the manifests, install them, and run day-2 work.
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: maps kferry errors to one line on stderr and their exit code."""
    scratch.install_signal_cleanup()
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None, prog_name="kferry", standalone_mode=False
        )
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
