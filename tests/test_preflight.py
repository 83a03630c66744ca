"""One cause, one error: each registry is checked once before anything is copied.

``kferry mirror`` of 20 images against a wrong CA, a wrong password, an account without push
rights, a port where nothing listens, ``--plain-http`` on a TLS registry, a plain-HTTP source
reached over TLS: each time exactly one line (on stderr, stdout empty), exit 1, no lock file,
and the target registry holds nothing (its catalog is empty). Also for the source side of
``bundle save``, the target of ``bundle load`` and ``airgap``. Real registries (Debian's
docker-registry: TLS + htpasswd, TLS + the token server with a read-only policy).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Result, run_kferry
from tests.support.images import push_image, random_blob
from tests.support.pki import new_ca
from tests.support.processes import free_port
from tests.support.registry import Registry, RegistryFactory, start_registry
from tests.support.tokenserver import TokenServer, start_token_server

pytestmark = pytest.mark.registry

COUNT = 20
READER, READER_PASSWORD = "reader", "reader-secret-pw"
WRITER, WRITER_PASSWORD = "writer", "writer-secret-pw"


@pytest.fixture(scope="module")
def source_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Plain HTTP, anonymous, shared by this module's tests (they only read from it)."""
    with start_registry(tmp_path_factory.mktemp("pf-source"), tls=False) as registry:
        yield registry


@pytest.fixture(scope="module")
def twenty(source_registry: Registry) -> list[str]:
    """20 small images sharing their layer, on the source."""
    base = random_blob(4000, "preflight")
    with source_registry.client() as client:
        return [
            push_image(
                source_registry, f"pf/app{i}", tag="1", layers=[], shared_layers=[base],
                client=client,
            ).tag_ref
            for i in range(COUNT)
        ]  # fmt: skip


def one_error(res: Result) -> str:
    """The run failed with exactly one line, on stderr; that line, without the prefix.
    (A bundle is read before its target is asked: the progress line saying it was read
    comes first, and is not an error.)"""
    assert res.code == 1, res
    assert res.out == "", res
    lines = [x for x in res.err.splitlines() if not x.startswith("reading bundle ")]
    assert len(lines) == 1, res.err
    assert lines[0].startswith("kferry: error: "), res.err
    assert "Traceback" not in res.err
    return lines[0].removeprefix("kferry: error: ")


def catalog(
    registry: Registry, username: str | None = None, password: str | None = None
) -> list[str]:
    with registry.client(username=username, password=password) as c:
        resp = c.get("/v2/_catalog")
        resp.raise_for_status()
        repos: list[str] = resp.json()["repositories"]
        return repos


def mirror(
    refs: Iterable[str],
    to: str,
    tmp_path: Path,
    *extra: str,
    password: str | None = None,
    username: str = "kferry",
) -> Result:
    args = ["mirror", *refs, "--to", to, "--lock", str(tmp_path / "lock.json"), "-o", "json"]
    stdin = None
    if password is not None:
        args += ["--username", username, "--password-stdin"]
        stdin = f"{password}\n".encode()
    res = run_kferry(*args, *extra, stdin=stdin)
    if password:
        assert password not in res.out + res.err
    return res


def nothing_copied(target: Registry, tmp_path: Path, **login: str) -> None:
    assert catalog(target, **login) == []
    assert not (tmp_path / "lock.json").exists()


@pytest.mark.parametrize("ca", ["none", "another CA"])
def test_wrong_ca_is_one_error(
    source_registry: Registry,
    target_registry: Registry,
    registry_factory: RegistryFactory,
    twenty: list[str],
    tmp_path: Path,
    ca: str,
) -> None:
    flags = ["--plain-http", source_registry.host]
    if ca != "none":
        flags += ["--ca-file", str(registry_factory(tls=True, name="other").ca_file)]
    res = mirror(
        twenty, f"{target_registry.host}/proj", tmp_path, *flags, password=target_registry.password
    )
    line = one_error(res)
    assert line.startswith(f"{target_registry.host}: TLS certificate not trusted"), line
    assert "--ca-file FILE" in line and f"--insecure {target_registry.host}" in line
    nothing_copied(target_registry, tmp_path)


@pytest.mark.parametrize("kind", ["htpasswd", "token"])
def test_wrong_password_says_the_credentials_were_rejected(
    source_registry: Registry,
    target_registry: Registry,
    token_registry: Registry,
    twenty: list[str],
    tmp_path: Path,
    kind: str,
) -> None:
    target = target_registry if kind == "htpasswd" else token_registry
    assert target.ca_file is not None
    res = mirror(
        twenty,
        f"{target.host}/proj",
        tmp_path,
        "--plain-http",
        source_registry.host,
        "--ca-file",
        str(target.ca_file),
        password="wrong-password",
    )
    line = one_error(res)
    assert line == (
        f"{target.host}: rejected the credentials (user 'kferry' from "
        "--username/--password-stdin): check the user name and the password given on stdin"
    ), line
    assert "pass --username" not in line
    nothing_copied(target, tmp_path)


def test_no_credentials_at_all_says_how_to_give_them(
    source_registry: Registry, target_registry: Registry, twenty: list[str], tmp_path: Path
) -> None:
    assert target_registry.ca_file is not None
    res = run_kferry(
        "mirror", *twenty, "--to", f"{target_registry.host}/proj", "--plain-http",
        source_registry.host, "--ca-file", str(target_registry.ca_file),
        "--lock", str(tmp_path / "lock.json"),
        env={"DOCKER_CONFIG": str(tmp_path / "no-docker-config")},
    )  # fmt: skip
    line = one_error(res)
    assert line == (
        f"{target_registry.host}: asks for credentials and none are configured for it: "
        f"kferry login {target_registry.host}, or --username USER --password-stdin"
    ), line
    nothing_copied(target_registry, tmp_path)


@pytest.fixture
def read_only(
    registry_factory: RegistryFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """TLS + token auth where READER may only pull and WRITER may do anything (the token
    server's policy hook)."""

    def policy(user: str | None, rtype: str, name: str, actions: tuple[str, ...]) -> Iterable[str]:
        if user == WRITER:
            return actions
        if user == READER:
            return [a for a in actions if a == "pull"]
        return ()

    ca = new_ca(tmp_path_factory.mktemp("ro-ca"))
    server: TokenServer = start_token_server(
        tmp_path_factory.mktemp("ro-token"), ca=ca, policy=policy, users={WRITER: WRITER_PASSWORD}
    )
    try:
        yield registry_factory(
            tls=True,
            auth="token",
            token_server=server,
            ca=ca,
            username=READER,
            password=READER_PASSWORD,
            name="read-only",
        )
    finally:
        server.stop()


def test_no_push_permission_is_one_error(
    source_registry: Registry, read_only: Registry, twenty: list[str], tmp_path: Path
) -> None:
    assert read_only.ca_file is not None
    res = mirror(
        twenty,
        f"{read_only.host}/proj",
        tmp_path,
        "--plain-http",
        source_registry.host,
        "--ca-file",
        str(read_only.ca_file),
        username=READER,
        password=READER_PASSWORD,
    )
    line = one_error(res)
    assert line.startswith(
        f"{read_only.host}: user 'reader' from --username/--password-stdin may not push into "
        "project 'proj' (an upload to proj/"
    ), line
    assert "give the account push rights there" in line
    nothing_copied(read_only, tmp_path, username=WRITER, password=WRITER_PASSWORD)


def test_the_push_probe_stores_nothing(
    source_registry: Registry, read_only: Registry, tmp_path: Path
) -> None:
    """The writer passes the preflight (an upload started and cancelled); the only image
    does not exist, so nothing is copied: the registry lists no repository at all."""
    assert read_only.ca_file is not None
    missing = f"{source_registry.host}/pf/absent:1"
    res = mirror(
        [missing],
        f"{read_only.host}/proj",
        tmp_path,
        "--plain-http",
        source_registry.host,
        "--ca-file",
        str(read_only.ca_file),
        username=WRITER,
        password=WRITER_PASSWORD,
    )
    assert res.code == 1 and "not found" in res.out, res
    assert catalog(read_only, username=WRITER, password=WRITER_PASSWORD) == []
    server = read_only.token_server
    assert server is not None
    assert any("pull%2Cpush" in r.path or "pull,push" in r.path for r in server.requests)


def test_nothing_listening_is_one_error(
    source_registry: Registry, twenty: list[str], tmp_path: Path
) -> None:
    host = f"127.0.0.1:{free_port()}"
    res = mirror(twenty, f"{host}/proj", tmp_path, "--plain-http", source_registry.host)
    line = one_error(res)
    assert line == (
        f"{host}: connection refused (nothing listens on that port): check the host and port "
        "in the reference or --to, and that the registry is running"
    ), line
    assert not (tmp_path / "lock.json").exists()


def test_plain_http_against_tls_says_drop_it(
    source_registry: Registry, target_registry: Registry, twenty: list[str], tmp_path: Path
) -> None:
    res = mirror(
        twenty,
        f"{target_registry.host}/proj",
        tmp_path,
        "--plain-http",
        source_registry.host,
        "--plain-http",
        target_registry.host,
        password=target_registry.password,
    )
    line = one_error(res)
    assert line.startswith(
        f"{target_registry.host}: serves HTTPS, not plain HTTP: drop --plain-http "
        f"{target_registry.host}"
    ), line
    nothing_copied(target_registry, tmp_path)


def test_plain_http_source_reached_over_tls_says_plain_http(
    source_registry: Registry, target_registry: Registry, twenty: list[str], tmp_path: Path
) -> None:
    assert target_registry.ca_file is not None
    res = mirror(
        twenty,
        f"{target_registry.host}/proj",
        tmp_path,
        "--ca-file",
        str(target_registry.ca_file),
        password=target_registry.password,
    )
    line = one_error(res)
    assert line == (
        f"{source_registry.host}: answered plain HTTP to a TLS connection: if it really "
        f"serves plain HTTP, say so with --plain-http {source_registry.host}"
    ), line
    nothing_copied(target_registry, tmp_path)


def test_bundle_save_checks_the_sources_first(twenty: list[str], tmp_path: Path) -> None:
    """The source registry named by the images is down: one line, and no bundle started."""
    host = f"127.0.0.1:{free_port()}"
    refs = [r.replace(r.split("/", 1)[0], host, 1) for r in twenty]
    out = tmp_path / "b.tar"
    res = run_kferry("bundle", "save", *refs, "--plain-http", host, "-o", str(out))
    line = one_error(res)
    assert line.startswith(f"{host}: connection refused"), line
    assert list(tmp_path.iterdir()) == []


def test_bundle_load_and_airgap_check_the_target_before_copying(
    source_registry: Registry, target_registry: Registry, twenty: list[str], tmp_path: Path
) -> None:
    bundle = tmp_path / "b"
    res = run_kferry(
        "bundle", "save", *twenty, "--plain-http", source_registry.host, "-o", str(bundle)
    )
    assert res.code == 0, res
    assert target_registry.ca_file is not None
    common = ["--to", f"{target_registry.host}/proj", "--ca-file", str(target_registry.ca_file),
              "--username", "kferry", "--password-stdin"]  # fmt: skip
    wrong = b"wrong-password\n"
    expected = f"{target_registry.host}: rejected the credentials (user 'kferry' from "
    res = run_kferry("bundle", "load", str(bundle), *common, "--lock", str(tmp_path / "l.json"),
                     stdin=wrong)  # fmt: skip
    assert one_error(res).startswith(expected)
    render = tmp_path / "render.yaml"
    render.write_text(
        "".join(
            f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}}}\n"
            f"spec: {{containers: [{{name: c, image: '{ref}'}}]}}\n"
            for i, ref in enumerate(twenty)
        )
    )
    out = tmp_path / "out" / "render.yaml"
    for mode in (["--plain-http", source_registry.host], ["--load", str(bundle)]):
        res = run_kferry("airgap", str(render), *common, *mode, "-o", str(out), stdin=wrong)
        assert one_error(res).startswith(expected), mode
        assert not out.parent.exists()
    nothing_copied(target_registry, tmp_path)


def test_two_causes_are_two_lines(twenty: list[str], tmp_path: Path) -> None:
    """The source and the target are both down: each is said once, each on its own line."""
    source, target = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    refs = [r.replace(r.split("/", 1)[0], source, 1) for r in twenty]
    res = mirror(refs, f"{target}/proj", tmp_path, "--plain-http", source, "--plain-http", target)
    assert res.code == 1 and res.out == "", res
    lines = res.err.splitlines()
    assert lines == [
        f"kferry: error: {host}: connection refused (nothing listens on that port): check the "
        "host and port in the reference or --to, and that the registry is running"
        for host in (target, source)
    ], res.err
