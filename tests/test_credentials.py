"""Credentials and trust as skopeo/podman users expect (issue 14): auth.json lookup order,
``kferry login``/``logout``, credentials for the source side, ``--cert-dir`` per host and
repeatable ``--ca-file`` (two registries, two test CAs, one run), client certificates, and
``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` through a real forwarding proxy (Debian's
tinyproxy, resolving names only it knows: tests/support/tinyproxy.py)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from kferry.transfer.credentials import Keychain, auth_files
from kferry.transfer.errors import RegistryError
from kferry.transfer.proxy import ProxyConfig
from kferry.transfer.registry import Registry as Client
from kferry.transfer.transport import Options, read_cert_dir
from tests.conftest import run_kferry
from tests.support.images import assert_copied, push_image
from tests.support.pki import issue_client_cert, new_ca
from tests.support.processes import free_port
from tests.support.registry import Registry, RegistryFactory
from tests.support.tinyproxy import start_tinyproxy
from tests.test_mirror import target_repo

HOST = "harbor.corp:8443"


def _auth(path: Path, host: str, user: str, password: str = "pw") -> Path:
    """Add ``auths[host]`` to the auth file ``path`` (created if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.exists() else {"auths": {}}
    doc["auths"][host] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    path.write_text(json.dumps(doc))
    return path


# -- lookup order (no server)


def test_auth_file_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """containers-auth.json(5): the primary file, XDG_CONFIG_HOME's, then docker's; an
    explicit file (--authfile, else $REGISTRY_AUTH_FILE) is the only one read."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    runtime = _auth(tmp_path / "run/containers/auth.json", HOST, "from-runtime")
    config = _auth(tmp_path / "config/containers/auth.json", HOST, "from-config")
    _auth(tmp_path / "docker/config.json", HOST, "from-docker")
    _auth(tmp_path / "docker/config.json", "only.docker", "docker-only")
    assert auth_files() == [runtime, config, tmp_path / "docker/config.json"]
    assert Keychain().get(HOST).username == "from-runtime"
    runtime.unlink()
    assert Keychain().get(HOST).username == "from-config"
    config.unlink()
    assert Keychain().get(HOST).username == "from-docker"

    env_file = _auth(tmp_path / "env.json", HOST, "from-env")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(env_file))
    assert auth_files() == [env_file]
    assert Keychain().get(HOST).username == "from-env"
    assert Keychain().get("only.docker").anonymous  # docker's file is not read then
    flag_file = _auth(tmp_path / "flag.json", HOST, "from-flag")
    assert auth_files(flag_file) == [flag_file]  # --authfile wins over the variable
    assert Keychain(files=auth_files(flag_file)).get(HOST).username == "from-flag"

    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert auth_files()[0] == Path(f"/run/containers/{os.getuid()}/auth.json")


def test_no_proxy_rules_as_go_reads_them() -> None:
    """golang/net@v0.56.0 http/httpproxy/proxy.go: what skopeo/containerd users write."""
    cfg = ProxyConfig.from_env(
        {
            "HTTPS_PROXY": "proxy.corp:3128",
            "http_proxy": "http://lower:1",
            "HTTP_PROXY": "http://upper:2",
            "NO_PROXY": "corp.example, .sub.test,10.0.0.0/8,192.168.1.5:5000,*.wild.test",
        }
    )
    via = "http://proxy.corp:3128"
    assert cfg.proxy_for("https://quay.io/v2/") == via  # no scheme: http:// assumed
    assert cfg.proxy_for("http://quay.io/v2/") == "http://upper:2"  # upper case wins
    for direct in (
        "https://127.0.0.1:5000/v2/",  # loopback: never proxied
        "https://127.9.9.9/v2/",
        "https://[::1]:5000/v2/",
        "https://localhost:5000/v2/",
        "https://corp.example/v2/",  # a name matches itself and its subdomains
        "https://harbor.corp.example:8443/v2/",
        "https://a.sub.test/v2/",  # a leading dot: subdomains only
        "https://x.wild.test/v2/",
        "https://10.20.30.40/v2/",  # CIDR
        "https://192.168.1.5:5000/v2/",  # IP with its port
    ):
        assert cfg.proxy_for(direct) is None, direct
    for proxied in (
        "https://sub.test/v2/",
        "https://notcorp.example.org/v2/",
        "https://192.168.1.5:5001/v2/",
        "https://11.0.0.1/v2/",
    ):
        assert cfg.proxy_for(proxied) == via, proxied
    assert (
        ProxyConfig.from_env({"HTTPS_PROXY": via, "NO_PROXY": "*"}).proxy_for("https://quay.io/")
        is None
    )
    cgi = ProxyConfig.from_env({"HTTP_PROXY": via, "REQUEST_METHOD": "GET"})
    assert cgi.proxy_for("http://quay.io/") is None  # httpoxy: ignored under CGI


def test_a_proxy_that_refuses_is_named_not_the_registry() -> None:

    dead = f"http://user:proxy-secret@127.0.0.1:{free_port()}"
    options = Options(proxies=ProxyConfig(https_proxy=dead), retries=0)
    client = Client("quay.io", options)
    try:
        with pytest.raises(RegistryError) as err:
            client.request("GET", "/v2/", ())
    finally:
        client.close()
    message = str(err.value)
    assert "the proxy did not connect us" in message and "HTTPS_PROXY" in message
    assert "127.0.0.1" in message and "proxy-secret" not in message


def test_cert_dir_client_cert_needs_its_key(tmp_path: Path) -> None:
    (tmp_path / "client.cert").write_text("x")
    with pytest.raises(RegistryError, match=r"client\.cert has no client\.key"):
        read_cert_dir(tmp_path)


def test_bad_cert_dir_is_one_line_exit_2(tmp_path: Path) -> None:
    host_dir = tmp_path / "certs" / "127.0.0.1:5000"
    host_dir.mkdir(parents=True)
    (host_dir / "ca.crt").write_text("not a certificate\n")
    res = run_kferry("bundle", "save", "busybox:1", "-o", str(tmp_path / "b"), "--cert-dir",
                     str(tmp_path / "certs"))  # fmt: skip
    assert res.code == 2, res.err
    assert res.err.count("\n") == 1 and str(host_dir / "ca.crt") in res.err


def test_login_refuses_a_password_it_cannot_read_safely(tmp_path: Path) -> None:
    """Never an argument; from stdin only when asked; no prompt without a terminal."""
    auth = str(tmp_path / "auth.json")
    for args, message in (
        (["--username", "u"], "--password-stdin"),  # stdin is a pipe: no prompt
        (["--password-stdin"], "--username is needed"),
        (["--username", "u", "--password-stdin"], "empty password"),
    ):
        res = run_kferry("login", HOST, "--authfile", auth, *args, stdin=b"\n")
        assert res.code == 2 and message in res.err, (args, res.err)
        assert res.err.count("\n") == 1
    assert run_kferry("login", HOST, "--password", "x").code == 2  # no such option
    assert not (tmp_path / "auth.json").exists()


# -- against real registries


def _cert_dir(directory: Path, *registries: Registry, ca_name: str = "ca.crt") -> Path:
    for registry in registries:
        assert registry.ca_file is not None
        (directory / registry.host).mkdir(parents=True, exist_ok=True)
        shutil.copy(registry.ca_file, directory / registry.host / ca_name)
    return directory


@pytest.mark.registry
def test_login_then_private_source_and_target_with_two_cas(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """`kferry login` checks (Basic and the token flow) before it saves, 0600; mirror and
    bundle save then read a private source (basic auth, CA A) and write a token-auth target
    (CA B) in one run, the CAs per host from --cert-dir or as two --ca-file."""
    source = registry_factory(tls=True, auth="htpasswd", name="src", password="src-secret-1")
    target = registry_factory(tls=True, auth="token", name="dst", password="dst-secret-2")
    assert source.ca_file != target.ca_file  # two different test CAs
    img = push_image(source, "team/app", tag="1")
    authfile = tmp_path / "auth" / "auth.json"
    certs = _cert_dir(tmp_path / "certs.d", source, target, ca_name="corp-root.crt")

    def login(reg: Registry, password: str, *flags: str) -> tuple[int, str]:
        res = run_kferry(
            "--debug", "login", reg.host, "--username", str(reg.username), "--password-stdin",
            "--authfile", str(authfile), *flags, stdin=f"{password}\n".encode(),
        )  # fmt: skip
        basic = base64.b64encode(f"{reg.username}:{password}".encode()).decode()
        assert "GET" in res.err  # --debug logs the requests...
        for secret in (password, basic):  # ...but never the password, plain or encoded
            assert secret not in res.out + res.err
        return res.code, res.out + res.err

    code, out = login(source, "wrong-password", "--ca-file", str(source.ca_file))
    assert code == 1 and "rejected" in out, out
    assert not authfile.exists()  # nothing saved for a login that failed
    code, out = login(target, "wrong-password", "--cert-dir", str(certs))
    assert code == 1 and "rejected" in out and "token service" in out, out

    code, out = login(source, "src-secret-1", "--ca-file", str(source.ca_file))
    assert code == 0, out
    code, out = login(target, "dst-secret-2", "--cert-dir", str(certs))
    assert code == 0, out
    assert stat.S_IMODE(authfile.stat().st_mode) == 0o600
    saved = json.loads(authfile.read_text())["auths"]
    assert set(saved) == {source.host, target.host}
    assert base64.b64decode(saved[source.host]["auth"]).decode() == "kferry:src-secret-1"

    res = run_kferry(
        "mirror", img.tag_ref, "--to", f"{target.host}/proj", "--authfile", str(authfile),
        "--cert-dir", str(certs), "--lock", str(tmp_path / "lock.json"), "-o", "json",
    )  # fmt: skip
    assert res.code == 0, res.out + res.err
    assert_copied(img, target, target_repo(img, source), tag="1")

    res = run_kferry(
        "bundle", "save", img.tag_ref, "-o", str(tmp_path / "bundle"),
        "--ca-file", str(source.ca_file), "--ca-file", str(target.ca_file),
        env={"REGISTRY_AUTH_FILE": str(authfile)},
    )  # fmt: skip
    assert res.code == 0, res.out + res.err
    assert "1 images: 1 saved" in res.out

    # without the source's credentials the same save is refused (they really were used)
    res = run_kferry("bundle", "save", img.tag_ref, "-o", str(tmp_path / "b2"),
                     "--cert-dir", str(certs),
                     env={"REGISTRY_AUTH_FILE": str(tmp_path / "none.json")})  # fmt: skip
    assert res.code == 1 and "asks for credentials and none are configured" in res.err  # preflight

    res = run_kferry("logout", source.host, "--authfile", str(authfile))
    assert res.code == 0, res.err
    assert set(json.loads(authfile.read_text())["auths"]) == {target.host}
    res = run_kferry("logout", source.host, "--authfile", str(authfile))
    assert res.code == 1 and "not logged in" in res.err


@pytest.mark.registry
def test_cert_dir_trusts_each_ca_for_its_own_host_only(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    source = registry_factory(tls=True, auth=None, name="src")
    target = registry_factory(tls=True, auth=None, name="dst")
    img = push_image(source, "team/app", tag="1")
    swapped = tmp_path / "swapped"
    assert source.ca_file is not None and target.ca_file is not None
    for reg, other in ((source, target), (target, source)):
        (swapped / reg.host).mkdir(parents=True)
        shutil.copy(other.ca_file or "", swapped / reg.host / "ca.crt")
    res = run_kferry("mirror", img.tag_ref, "--to", f"{target.host}/proj", "--cert-dir",
                     str(swapped), "--lock", str(tmp_path / "l.json"))  # fmt: skip
    assert res.code == 1
    assert "not trusted" in res.out + res.err and "--cert-dir" in res.out + res.err
    right = _cert_dir(tmp_path / "right", source, target)
    res = run_kferry("mirror", img.tag_ref, "--to", f"{target.host}/proj", "--cert-dir",
                     str(right), "--lock", str(tmp_path / "l.json"))  # fmt: skip
    assert res.code == 0, res.out + res.err
    # the same two hosts with the two CAs as repeated --ca-file (each trusted everywhere)
    res = run_kferry("mirror", img.tag_ref, "--to", f"{target.host}/proj",
                     "--ca-file", str(source.ca_file), "--ca-file", str(target.ca_file),
                     "--lock", str(tmp_path / "l.json"))  # fmt: skip
    assert res.code == 0, res.out + res.err
    res = run_kferry("mirror", img.tag_ref, "--to", f"{target.host}/proj",
                     "--ca-file", str(source.ca_file),
                     "--lock", str(tmp_path / "l.json"))  # fmt: skip
    assert res.code == 1 and "not trusted" in res.out + res.err  # one CA is not enough


@pytest.mark.registry
def test_cert_dir_client_certificate(registry_factory: RegistryFactory, tmp_path: Path) -> None:
    """A registry that wants a client certificate (docker-registry http.tls.clientcas) gets
    the NAME.cert/NAME.key pair of its cert dir."""
    ca = new_ca(tmp_path / "ca")
    target = registry_factory(tls=True, ca=ca, name="mtls", require_client_cert=True)
    source = registry_factory(tls=False, name="src")
    img = push_image(source, "team/app", tag="1")
    certs = _cert_dir(tmp_path / "certs", target)
    args = ("mirror", img.tag_ref, "--plain-http", source.host, "--to", f"{target.host}/proj",
            "--cert-dir", str(certs), "--lock", str(tmp_path / "l.json"))  # fmt: skip
    assert run_kferry(*args).code == 1  # no client certificate: the handshake fails
    cert, key = issue_client_cert(ca, tmp_path / "issued", "client", "kferry")
    shutil.copy(cert, certs / target.host / "client.cert")
    shutil.copy(key, certs / target.host / "client.key")
    res = run_kferry(*args)
    assert res.code == 0, res.out + res.err


@pytest.mark.registry
def test_https_proxy_for_the_connected_side_loopback_direct(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """Sources only the proxy (Debian's tinyproxy) can resolve, ``*.proxy.test``, are reached
    through it: a TLS one by CONNECT (HTTPS_PROXY), a plain-HTTP one by absolute-form requests
    (HTTP_PROXY). The loopback target is not: nothing for 127.0.0.1 reaches the proxy although
    both variables are set. With the names in NO_PROXY they are tried directly and fail at once,
    saying why."""
    tls_name, plain_name = "registry.proxy.test", "plain.proxy.test"
    source = registry_factory(tls=True, auth="htpasswd", name="src", server_names=[tls_name])
    plain = registry_factory(tls=False, name="plain")
    target = registry_factory(tls=True, auth="htpasswd", name="dst")
    img = push_image(source, "team/app", tag="1")
    other = push_image(plain, "team/tool", tag="2")
    tls_host, plain_host = f"{tls_name}:{source.port}", f"{plain_name}:{plain.port}"
    authfile = _auth(tmp_path / "auth.json", tls_host, "kferry", str(source.password))
    _auth(authfile, target.host, "kferry", str(target.password))
    certs = tmp_path / "certs"
    (certs / tls_host).mkdir(parents=True)
    shutil.copy(source.ca_file or "", certs / tls_host / "ca.crt")
    _cert_dir(certs, target)
    args = ("mirror", f"{tls_host}/team/app:1", f"{plain_host}/team/tool:2",
            "--plain-http", plain_host, "--to", f"{target.host}/proj",
            "--authfile", str(authfile), "--cert-dir", str(certs),
            "--lock", str(tmp_path / "l.json"), "-o", "json")  # fmt: skip
    proxy = start_tinyproxy(tmp_path / "proxy", {tls_name: "127.0.0.1", plain_name: "127.0.0.1"})
    try:
        env = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url, "NO_PROXY": "other.example"}
        res = run_kferry(*args, env=env)
        assert res.code == 0, res.out + res.err + proxy.logs()
        assert proxy.connects() and set(proxy.connects()) == {tls_host}
        plain_requests = [r for r in proxy.requests() if not r.startswith("CONNECT ")]
        assert plain_requests and all(f"http://{plain_host}/v2/" in r for r in plain_requests)
        assert not [r for r in proxy.requests() if "127.0.0.1" in r]
        assert_copied(img, target, target_repo(img, tls_host), tag="1")
        assert_copied(other, target, target_repo(other, plain_host), tag="2")

        seen = len(proxy.requests())
        res = run_kferry(*args, env={**env, "NO_PROXY": "other.example,.proxy.test"})
        assert res.code == 1
        assert "is not known here (DNS)" in res.err and "HTTPS_PROXY" in res.err  # one line
        assert len(proxy.requests()) == seen  # NO_PROXY: not sent to the proxy at all
    finally:
        proxy.stop()
