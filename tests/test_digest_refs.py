"""References by a digest kferry cannot copy (sha384/sha512 parse, issue 11): every copy
command refuses them with the same clear error before asking any registry, and plans and
rewrites them like any other reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from kferry.name import is_digest, parse
from kferry.plan import Target, plan_one
from tests.conftest import run_kferry

SHA512 = "docker.io/library/busybox@sha512:" + "a" * 128
# nothing listens on port 9 (discard): a command that asked a registry would fail differently
NOWHERE = "127.0.0.1:9/kf"


@pytest.mark.parametrize(
    "args",
    [
        ("mirror", SHA512, "--to", NOWHERE),
        ("bundle", "save", SHA512, "-o", "{tmp}/b"),
    ],
)
def test_copy_commands_refuse_a_sha512_reference(tmp_path: Path, args: tuple[str, ...]) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = (
        run_kferry(*argv, "--lock", str(tmp_path / "lock.json"))
        if args[0] == "mirror"
        else (run_kferry(*argv))
    )
    assert res.code == 1, res
    said = " ".join((res.err + res.out).split())  # rich wraps long lines
    assert "named by a sha512 digest" in said, res
    assert "by tag or by sha256 digest only" in said, res
    assert "Connect" not in said  # refused before any connection
    assert not (tmp_path / "lock.json").exists()


def test_sha512_reference_plans_and_keeps_its_digest() -> None:
    source = parse(SHA512)
    target = plan_one(source, Target.parse("reg.local/kf"))
    assert target.digest == source.digest
    assert target.canonical == "reg.local/kf/docker.io/library/busybox@sha512:" + "a" * 128


def test_identifier_is_a_digest_or_a_tag() -> None:
    ref = parse("reg.local/kf/app:1")
    assert ref.at("sha256:" + "b" * 64).digest == "sha256:" + "b" * 64
    assert ref.at("sha256:" + "b" * 64).tag is None
    assert ref.at("v2").tag == "v2" and ref.at("v2").digest is None
    assert is_digest("sha512:" + "a" * 128) and not is_digest("latest")
