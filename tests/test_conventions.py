"""Command-line conventions (issue 14): --help fast and with examples, --version with the
catalog, -o yaml beside -o json, exit codes in one place, NO_COLOR/--no-color, shell
completion, -v/--debug logging without secrets, digests never cut in tables. No servers."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console
from rich.table import Table

from kferry.cli import output
from kferry.cli.examples import EXAMPLES
from kferry.cli.main import COMMANDS, EXIT_CODES, LazyGroup, cli
from kferry.logs import REDACTED, redact
from tests.conftest import ROOT, release_path, run_kferry


def all_commands() -> list[tuple[str, click.Command]]:
    """Every command path ("bundle save") with its command, loaded through the group."""
    found: list[tuple[str, click.Command]] = []
    ctx = click.Context(cli)
    assert isinstance(cli, LazyGroup)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        assert cmd is not None, name
        found.append((name, cmd))
        if isinstance(cmd, click.Group):
            found += [(f"{name} {sub}", c) for sub, c in sorted(cmd.commands.items())]
    return found


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys\n"
        "from kferry.cli.main import main\n"
        "rc = main(['--help'])\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('kferry.cli.', 'rich', "
        "'httpx', 'lightkube')) and m not in ('kferry.cli.main', 'kferry.cli.examples'))\n"
        "print('HEAVY', heavy, rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY [] 0" in proc.stdout, proc.stdout[-500:]
    assert "Examples:\n    kferry images" in proc.stdout
    for name in COMMANDS:
        assert f"  {name} " in proc.stdout


def test_every_command_help_has_examples() -> None:
    runner = CliRunner()
    commands = all_commands()
    assert len(commands) > 25
    for path, cmd in commands:
        res = runner.invoke(cli, [*path.split(), "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "\n  Examples:\n    " in res.output, path
        assert "kferry " + path in res.output.split("Examples:")[1], path
        # every option an example uses exists on that command (the examples do not rot)
        names = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        for example in EXAMPLES[path]:
            assert f"kferry {path}" in example, (path, example)
            tail = example.replace("\\\n", " ").rsplit(f"kferry {path}", 1)[1]
            for word in tail.split():
                if word in ("|", "<", ">", "#") or word.startswith(")"):
                    break
                if word.startswith("-") and word != "-" and not isinstance(cmd, click.Group):
                    assert word.split("=")[0] in names, (path, word)


def test_version_names_catalog_date_and_coverage() -> None:
    res = run_kferry("--version")
    assert res.code == 0, res.err
    about = yaml.safe_load((ROOT / "src/kferry/catalog/data/about.yaml").read_text())
    assert res.out.startswith("kferry ")
    assert f"catalog {about['date']}" in res.out
    for release in about["releases"]:
        assert str(release) in res.out
    assert "components" in res.out


@pytest.mark.parametrize(
    "args",
    [
        ["catalog"],
        ["images", str(release_path("v1.4.1"))],
        ["catalog", "check", str(release_path("v1.4.1"))],
        ["plan", "docker.io/library/busybox:1.36", "--to", "harbor.local/kf"],
    ],
)
def test_output_yaml_is_the_json_data(args: list[str]) -> None:
    as_json = run_kferry(*args, "-o", "json")
    as_yaml = run_kferry(*args, "-o", "yaml")
    assert as_json.code == as_yaml.code == 0, as_yaml.err
    assert not as_yaml.out.lstrip().startswith(("{", "["))
    assert yaml.safe_load(as_yaml.out) == json.loads(as_json.out)


def test_every_json_output_option_offers_yaml() -> None:
    for path, cmd in all_commands():
        for param in cmd.params:
            choices = param.type.choices if isinstance(param.type, click.Choice) else ()
            if "--output" in param.opts and "json" in choices:
                assert "yaml" in choices, path


def test_exit_codes_in_one_place() -> None:
    res = run_kferry("help", "exit-codes")
    assert res.code == 0
    top = run_kferry("--help")
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in ("0", "1", "2", "3", "130"):
        assert f"\n  {code} " in res.out
        assert f"\n    {code} " in top.out
        assert f"| {code} |" in section
    assert res.out.strip() == EXIT_CODES.removeprefix("\b\n").strip()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color", [None, "1"])
def test_no_color_env(monkeypatch: pytest.MonkeyPatch, no_color: str | None) -> None:
    fake = _Tty()
    monkeypatch.setattr(sys, "stdout", fake)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)
    console = output.stdout_console()
    console.print("failed", style="red")
    assert ("\x1b[31m" in fake.getvalue()) is (no_color is None)


def test_no_color_flag_sets_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    res = CliRunner().invoke(cli, ["--no-color", "help", "exit-codes"])
    assert res.exit_code == 0
    assert os.environ.get("NO_COLOR") == "1"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash")
def test_bash_completion_completes_subcommands(tmp_path: Path) -> None:
    script = run_kferry("completion", "bash")
    assert script.code == 0, script.err
    (tmp_path / "completion.bash").write_text(script.out)
    wrapper = tmp_path / "bin" / "kferry"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m kferry "$@"\n')
    wrapper.chmod(0o755)
    driver = (
        f"source {tmp_path / 'completion.bash'}\n"
        "complete -p kferry\n"
        "COMP_WORDS=(kferry mir); COMP_CWORD=1; _kferry_completion kferry\n"
        'echo "TOP:${COMPREPLY[*]}"\n'
        "COMPREPLY=()\n"
        "COMP_WORDS=(kferry bundle s); COMP_CWORD=2; _kferry_completion kferry\n"
        'echo "SUB:${COMPREPLY[*]}"\n'
    )
    env = dict(os.environ, PATH=f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        ["bash", "--norc", "-c", driver], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "TOP:mirror mirror-config" in proc.stdout
    assert "SUB:save" in proc.stdout
    for shell in ("zsh", "fish"):
        res = run_kferry("completion", shell)
        assert res.code == 0 and "_KFERRY_COMPLETE" in res.out


def test_redact_takes_out_every_secret_form() -> None:
    samples = {
        "receive_response_headers.complete return_value=(b'HTTP/1.1', 200, b'OK', "
        "[(b'Set-Cookie', b'oauth2_proxy=SECRETVALUE; Path=/'), (b'Content-Length', b'2')])": (
            "SECRETVALUE"
        ),
        "request headers: Authorization: Basic dXNlcjpTRUNSRVRWQUxVRQ==": "dXNlcjpT",
        "sending Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.SECRETVALUE": "SECRETVALUE",
        "GET https://robot:SECRETVALUE@harbor.local/v2/": "SECRETVALUE",
        "POST https://auth.local/token?grant_type=password&password=SECRETVALUE": "SECRETVALUE",
    }
    for text, secret in samples.items():
        cleaned = redact(text)
        assert secret not in cleaned, cleaned
        assert REDACTED in cleaned
    assert redact("GET https://harbor.local/v2/ 200 OK") == "GET https://harbor.local/v2/ 200 OK"


def test_digest_reference_never_cut_in_a_narrow_table() -> None:
    ref = "harbor.local:8443/kubeflow/ghcr.io/kubeflow/pipelines/launcher@sha256:" + "ab" * 32
    console = Console(width=60, file=io.StringIO(), record=True, color_system=None)
    table = Table(box=None)
    output.reference_column(table, "IMAGE")
    table.add_column("WHY", overflow="fold")
    table.add_row(ref, "a message that may fold as it likes")
    output.print_table(console, table)
    text = console.export_text()
    assert ref in text.replace(" \n", "\n")
    assert console.width == 60


def test_reference_in_folded_prose_stays_whole() -> None:
    """doctor's findings are prose that folds; a reference inside stays one unbroken word."""
    ref = "harbor.local:8443/kubeflow/docker.io/kserve/kserve-controller@sha256:" + "cd" * 32
    console = Console(width=50, file=io.StringIO(), record=True, color_system=None)
    table = Table(box=None)
    for col in ("SEVERITY", "FINDING"):
        table.add_column(col, overflow="fold")
    table.add_row("error", f"pods pull {ref} which is not in the mirror")
    output.print_table(console, table)
    assert ref in console.export_text()
