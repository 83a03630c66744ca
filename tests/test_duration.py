"""The one duration grammar (kferry.duration) and its use by every ``--timeout``."""

from __future__ import annotations

from pathlib import Path

import pytest

from kferry.duration import DurationError, format_duration, parse_duration
from tests.conftest import run_kferry


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1m30s", 90),
        ("1.5m", 90),
        ("500ms", 0.5),
        ("1s500ms", 1.5),
        ("0", 0),
        (" 2m ", 120),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "m5", "-1s", "1h 30m", "5mss", "1.s", "ms"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(DurationError, match="not a duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59, 900, 5400.4)] == ["0s", "59s", "15m", "1h30m"]


@pytest.mark.parametrize(
    "command",
    [
        ("apply",),
        ("status", "--wait"),
        ("users", "add", "a@example.com"),
        ("users", "remove", "a@example.com"),
        ("users", "check", "a@example.com", "--url", "https://kf.example"),
    ],
)
def test_every_timeout_option_refuses_a_bad_duration_naming_the_option(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    res = run_kferry(*command, "--timeout", "soon", env={"KUBECONFIG": str(tmp_path / "none")})
    assert res.code == 2, (res.out, res.err)
    assert "--timeout" in res.err
    assert "'soon' is not a duration" in res.err
    assert "Traceback" not in res.err


@pytest.mark.parametrize("command", [("apply",), ("status", "--wait")])
def test_milliseconds_are_a_duration_for_apply_as_for_status(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """``--timeout 500ms`` parses for every command; the run then stops at the kubeconfig."""
    res = run_kferry(*command, "--timeout", "500ms", env={"KUBECONFIG": str(tmp_path / "none")})
    assert "not a duration" not in res.err
    assert "kubeconfig" in res.err, res.err
