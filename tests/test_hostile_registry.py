"""Lying and failing registries, token servers and TLS set-ups (issue 10, items 1, 4, 6, 11).

Every server is real and on loopback: docker-registry (TLS from a test CA, htpasswd or token
auth), the token server of tests/support (here also over plain HTTP, as a TLS-terminating
proxy in front of Harbor advertises it) and the FlakyProxy that answers 5xx or cuts
connections. Results are checked with skopeo.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_kferry
from tests.support.images import assert_copied, push_image
from tests.support.proxy import ProxyFactory
from tests.support.registry import Registry, RegistryFactory
from tests.support.skopeo import skopeo_raw_digest
from tests.support.tokenserver import start_token_server
from tests.test_mirror import mirror, target_repo

pytestmark = pytest.mark.registry


# -- 1: credentials only over TLS ---------------------------------------------------------------
def test_plain_http_token_realm_gets_no_password(
    source_registry: Registry, registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """An HTTPS registry whose challenge names an http:// realm: the password stays home."""
    token = start_token_server(tmp_path / "token", ca=None)  # plain HTTP
    try:
        target = registry_factory(tls=True, auth="token", token_server=token, name="lying")
        assert token.realm.startswith("http://")
        img = push_image(source_registry, "realm/app", tag="1")
        res, _ = mirror(
            target, img.tag_ref, "--plain-http", source_registry.host, lock=tmp_path / "l.json"
        )
        assert res.code == 1, res.out
        error = res.err  # the preflight's one line (tests/test_preflight.py)
        token_host = token.url.removeprefix("http://")
        assert "plain HTTP" in error and f"--plain-http {token_host}" in error
        assert "Traceback" not in res.err
        # Nothing that carried a credential reached the token server.
        assert all(r.username is None for r in token.requests), token.requests

        # Named as plain HTTP by the user: allowed.
        res, _ = mirror(
            target,
            img.tag_ref,
            "--plain-http",
            source_registry.host,
            "--plain-http",
            token_host,
            lock=tmp_path / "l2.json",
        )
        assert res.code == 0, res.out + res.err
        assert any(r.username == target.username and r.authenticated for r in token.requests)
        repo = target_repo(img, source_registry)
        assert skopeo_raw_digest(f"{target.host}/{repo}:1", registry=target) == img.digest
    finally:
        token.stop()


def test_plain_http_realm_from_docker_config_credentials_also_refused(
    source_registry: Registry, registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    from tests.support.registry import write_docker_config

    token = start_token_server(tmp_path / "token", ca=None)
    try:
        target = registry_factory(tls=True, auth="token", token_server=token, name="lying2")
        config = write_docker_config(tmp_path / "docker", target)
        img = push_image(source_registry, "realm/cfg", tag="1")
        res, _ = mirror(
            target,
            img.tag_ref,
            "--plain-http",
            source_registry.host,
            login=False,
            env={"DOCKER_CONFIG": str(config)},
            lock=tmp_path / "l.json",
        )
        assert res.code == 1
        assert "unencrypted" in res.err  # the preflight's one line
        assert all(r.username is None for r in token.requests)
    finally:
        token.stop()


# -- 4: every request safe to repeat is retried -------------------------------------------------
@pytest.mark.parametrize("status", [503, 429, 500])
def test_blob_put_answering_5xx_is_retried(
    source_registry: Registry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
    status: int,
) -> None:
    img = push_image(source_registry, "put/retry", tag="1", layers=[300_000, 200_000])
    proxy = make_flaky_proxy(target_registry)
    proxy.fail_next(3, status=status, retry_after=None, method="PUT", path=r"/blobs/uploads/")
    res, _ = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        "--plain-http",
        proxy.host,
        to_host=proxy.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.out + res.err
    assert proxy.injected() == 3
    assert_copied(
        img, target_registry, target_repo(img, source_registry), tag="1", check_blob_bytes=True
    )


def test_blob_patch_answering_5xx_and_dropped_is_retried(
    source_registry: Registry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    img = push_image(source_registry, "patch/retry", tag="1", layers=[2_500_000])
    proxy = make_flaky_proxy(target_registry)
    proxy.fail_next(2, status=502, retry_after=None, method="PATCH", path=r"/blobs/uploads/")
    proxy.drop_upload_next(1, after_bytes=100_000, method="PATCH")
    res, _ = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        "--plain-http",
        proxy.host,
        "--chunk-size",
        str(1 << 20),
        to_host=proxy.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.out + res.err
    assert proxy.injected() == 3
    assert_copied(
        img, target_registry, target_repo(img, source_registry), tag="1", check_blob_bytes=True
    )


def test_bundle_save_retries_a_blob_cut_midway(
    source_registry: Registry, make_flaky_proxy: ProxyFactory, tmp_path: Path
) -> None:
    img = push_image(source_registry, "cut/blob", tag="1", layers=[1_500_000])
    proxy = make_flaky_proxy(source_registry)
    proxy.drop_next(2, after_bytes=300_000)
    out = tmp_path / "b"
    res = run_kferry(
        "bundle", "save", proxy.ref("cut/blob", "1"), "--plain-http", proxy.host, "-o", str(out)
    )
    assert res.code == 0, res.out + res.err
    assert proxy.injected() == 2
    layer = img.layers[-1]
    assert (out / "blobs" / "sha256" / layer.digest.split(":")[1]).read_bytes() == layer.data


@pytest.mark.slow
def test_bundle_save_blob_cut_every_time_names_the_blob(
    source_registry: Registry, make_flaky_proxy: ProxyFactory, tmp_path: Path
) -> None:
    img = push_image(source_registry, "cut/always", tag="1", layers=[800_000])
    proxy = make_flaky_proxy(source_registry)
    proxy.drop_next(50, after_bytes=100_000)
    res = run_kferry(
        "bundle",
        "save",
        proxy.ref("cut/always", "1"),
        "--plain-http",
        proxy.host,
        "-o",
        str(tmp_path / "b"),
        "--json",
    )
    assert res.code == 1
    error = json.loads(res.out)["failures"][0]["error"]
    # every blob GET is cut: whichever blob gives up first is the one named
    assert any(b.digest in error for b in img.blobs) and "attempts" in error
    assert "Traceback" not in res.err


# -- 6: the environment does not change trust ---------------------------------------------------
def _hashed_cert_dir(ca_file: Path, directory: Path) -> Path:
    directory.mkdir()
    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    (directory / f"{digest}.0").write_bytes(ca_file.read_bytes())
    return directory


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
def test_ssl_cert_environment_adds_no_trust(
    source_registry: Registry, target_registry: Registry, tmp_path: Path, variable: str
) -> None:
    """The target's CA is only in SSL_CERT_FILE / SSL_CERT_DIR: kferry must not trust it."""
    img = push_image(source_registry, "env/trust", tag="1")
    assert target_registry.ca_file is not None
    value = (
        str(target_registry.ca_file)
        if variable == "SSL_CERT_FILE"
        else str(_hashed_cert_dir(target_registry.ca_file, tmp_path / "certs"))
    )
    res = run_kferry(
        "mirror",
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        "--to",
        f"{target_registry.host}/proj",
        "--username",
        str(target_registry.username),
        "--password-stdin",
        "--lock",
        str(tmp_path / "l.json"),
        stdin=f"{target_registry.password}\n".encode(),
        env={variable: value},
    )
    assert res.code == 1, res.out
    assert "TLS certificate not trusted" in res.err and "--ca-file" in res.err


# -- 11: messages that say what happened ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["target_registry", "token_registry"])
def test_wrong_password_on_stdin_does_not_say_pass_username(
    source_registry: Registry, tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    target: Registry = request.getfixturevalue(kind)
    img = push_image(source_registry, "pw/x", tag="1")
    res, _ = mirror(
        target,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        password="not-the-password",
        lock=tmp_path / "l.json",
    )
    assert res.code == 1
    error = res.err  # the preflight's one line (tests/test_preflight.py)
    assert "pass --username" not in error
    assert "password given on stdin" in error
    assert "not-the-password" not in res.out + res.err


def test_plain_http_against_tls_registry_says_so(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = push_image(source_registry, "tls/x", tag="1")
    res, _ = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        "--plain-http",
        target_registry.host,
        lock=tmp_path / "l.json",
    )
    assert res.code == 1
    error = res.err  # the preflight's one line (tests/test_preflight.py)
    assert "serves HTTPS" in error and "drop --plain-http" in error


def test_bad_ca_file_fails_once_up_front(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    a = push_image(source_registry, "ca/a", tag="1")
    b = push_image(source_registry, "ca/b", tag="1")
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    res = run_kferry(
        "mirror",
        a.tag_ref,
        b.tag_ref,
        "--plain-http",
        source_registry.host,
        "--to",
        f"{target_registry.host}/proj",
        "--ca-file",
        str(bad),
        "--lock",
        str(tmp_path / "l.json"),
    )
    assert res.code == 2, res.out + res.err
    assert res.out == ""
    assert res.err.count("--ca-file") == 1 and str(bad) in res.err
    assert "Traceback" not in res.err


def test_upload_location_on_another_host_gets_no_credentials(
    source_registry: Registry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    """A registry whose upload Location names another host: the upload goes there (as the
    protocol says) but the password does not."""
    front = make_flaky_proxy(target_registry)
    elsewhere = make_flaky_proxy(target_registry)  # another origin, plain HTTP
    front.location_base = elsewhere.url
    img = push_image(source_registry, "loc/app", tag="1", layers=[100_000])
    res, summary = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        "--plain-http",
        front.host,
        "--plain-http",
        elsewhere.host,
        to_host=front.host,
        lock=tmp_path / "l.json",
    )
    assert any(r.method in ("PUT", "PATCH") for r in elsewhere.requests)
    assert elsewhere.with_authorization == [], elsewhere.with_authorization
    assert front.with_authorization, "the registry itself does get the credentials"
    assert str(target_registry.password) not in res.out + res.err
    assert res.code == 1
    assert "sends no credentials there" in summary["failures"][0]["error"]
