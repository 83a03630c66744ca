"""The ``kferry`` command: parses arguments, calls the stages, prints. Nothing else."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from kferry import __version__
from kferry.cli.apply import apply
from kferry.cli.doctor import doctor
from kferry.cli.images import images
from kferry.cli.rewrite import airgap, mirror_config, rewrite
from kferry.cli.status import status
from kferry.cli.transfer import bundle, mirror, plan_cmd
from kferry.cli.users import users
from kferry.errors import KferryError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kferry")
def cli() -> None:
    """Take Kubeflow across the air gap.

    Find every image a Kubeflow installation needs, copy it into a private registry byte for
    byte, rewrite the manifests, install them, and run day-2 work.
    """


cli.add_command(images)
cli.add_command(plan_cmd)
cli.add_command(mirror)
cli.add_command(bundle)
cli.add_command(rewrite)
cli.add_command(mirror_config)
cli.add_command(airgap)
cli.add_command(apply)
cli.add_command(doctor)
cli.add_command(status)
cli.add_command(users)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: maps kferry errors to one line on stderr and their exit code."""
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None, prog_name="kferry", standalone_mode=False
        )
    except KferryError as exc:
        click.echo(f"kferry: error: {exc}", err=True)
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
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
