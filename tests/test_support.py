"""The registry test harness is real: images pushed with raw API calls read back through
skopeo with the same digests, auth accepts right and rejects wrong credentials, the token
flow works with distribution 2.8, and FlakyProxy injects faults and then recovers."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.images import (
    DOCKER_FOREIGN_LAYER,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    Media,
    PushedImage,
    RegistryError,
    assert_copied,
    blob_exists,
    fetch_blob,
    fetch_manifest,
    list_tags,
    manifest_exists,
    push_blob_chunked,
    push_image,
    push_index,
    push_multiarch,
    random_blob,
    sha256_digest,
)
from tests.support.proxy import FlakyProxy, ProxyFactory
from tests.support.registry import (
    Registry,
    RegistryFactory,
    start_registry,
    write_docker_config,
)
from tests.support.skopeo import SkopeoError, skopeo_copy, skopeo_inspect_raw, skopeo_raw_digest
from tests.support.tokenserver import (
    Algorithm,
    KeyIdMode,
    TokenServer,
    libtrust_key_id,
    start_token_server,
)


def assert_served(registry: Registry, image: PushedImage) -> None:
    """skopeo and a raw GET both see exactly the pushed bytes, by digest and by tag."""
    refs = [image.ref] + ([image.tag_ref] if image.tag else [])
    for ref in refs:
        assert skopeo_raw_digest(ref, registry=registry) == image.digest, ref
    with registry.client() as client:
        fetched = fetch_manifest(client, image.repo, image.digest)
    assert fetched.data == image.manifest_bytes
    assert fetched.media_type == image.media_type


# --- registries come up fast, for real, and go away


@pytest.mark.registry
def test_each_kind_starts_fast_and_answers(any_registry: Registry) -> None:
    assert any_registry.running
    assert any_registry.start_seconds < 1.0, any_registry.start_seconds
    assert any_registry.url.startswith("https://" if any_registry.tls else "http://")
    assert any_registry.host == f"127.0.0.1:{any_registry.port}"
    with any_registry.client() as client:
        response = client.get("/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


@pytest.mark.registry
def test_tls_needs_the_ca(target_registry: Registry) -> None:
    assert target_registry.ca_file is not None and target_registry.ca_file.exists()
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{target_registry.url}/v2/")
    with httpx.Client(verify=target_registry.verify) as client:
        assert client.get(f"{target_registry.url}/v2/").status_code == 401
        # The certificate also names localhost.
        assert client.get(f"https://localhost:{target_registry.port}/v2/").status_code == 401


@pytest.mark.registry
def test_stop_and_restart_keep_port_and_storage(source_registry: Registry) -> None:
    image = push_image(source_registry, "keep/me", tag="v1")
    pid = source_registry.process.pid if source_registry.process else None
    source_registry.restart()
    assert source_registry.process is not None and source_registry.process.pid != pid
    assert_served(source_registry, image)
    process = source_registry.process
    source_registry.stop()
    assert process.poll() is not None
    assert not source_registry.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{source_registry.url}/v2/")
    source_registry.stop()  # idempotent


@pytest.mark.registry
def test_upload_session_survives_restart(target_registry: Registry) -> None:
    """The config pins http.secret, so an upload's Location stays valid across restart()."""
    data = random_blob(100_000, "resume")
    with target_registry.client() as client:
        start = client.post("/v2/resume/blobs/uploads/")
        first = client.patch(
            start.headers["Location"],
            content=data[:60_000],
            headers={"Content-Type": "application/octet-stream", "Content-Range": "0-59999"},
        )
        assert first.status_code == 202
    target_registry.restart()
    with target_registry.client() as client:
        status = client.get(first.headers["Location"])
        assert status.status_code == 204 and status.headers["Range"] == "0-59999"
        second = client.patch(
            status.headers["Location"],
            content=data[60_000:],
            headers={"Content-Type": "application/octet-stream", "Content-Range": "60000-99999"},
        )
        assert second.status_code == 202
        done = client.put(
            httpx.URL(second.headers["Location"]).copy_merge_params({"digest": sha256_digest(data)})
        )
        assert done.status_code == 201
        assert fetch_blob(client, "resume", sha256_digest(data)) == data


@pytest.mark.registry
def test_ref_builds_tag_and_digest_references(source_registry: Registry) -> None:
    host = source_registry.host
    assert source_registry.ref("a/b", "v1") == f"{host}/a/b:v1"
    digest = sha256_digest(b"x")
    assert source_registry.ref("a/b", digest) == f"{host}/a/b@{digest}"


# --- images pushed with raw API calls, read back by skopeo


@pytest.mark.parametrize("media", ["oci", "docker"])
@pytest.mark.registry
def test_image_and_index_round_trip_through_skopeo(any_registry: Registry, media: Media) -> None:
    image = push_image(any_registry, "team/app", tag="v1", layers=[10, 4096], media=media)
    assert_served(any_registry, image)
    assert image.config is not None
    config = json.loads(image.config.data)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert len(config["rootfs"]["diff_ids"]) == 2

    index = push_multiarch(
        any_registry,
        "team/app",
        tag="multi",
        platforms=["linux/amd64", "linux/arm64/v8", "linux/ppc64le"],
        media=media,
    )
    assert_served(any_registry, index)
    listed = json.loads(skopeo_inspect_raw(index.tag_ref, registry=any_registry))
    platforms = [m["platform"] for m in listed["manifests"]]
    assert {"architecture": "arm64", "os": "linux", "variant": "v8"} in platforms
    for child in index.children:
        assert child.tag is None
        assert_served(any_registry, child)
    with any_registry.client() as client:
        assert list_tags(client, "team/app") == ["multi", "v1"]
        for blob in index.blobs:
            assert fetch_blob(client, "team/app", blob.digest) == blob.data


@pytest.mark.registry
def test_push_by_digest_only(source_registry: Registry) -> None:
    image = push_image(source_registry, "no/tag", layers=[100])
    assert image.tag is None
    assert_served(source_registry, image)
    with source_registry.client() as client:
        assert list_tags(client, "no/tag") == []
    with pytest.raises(ValueError):
        _ = image.tag_ref


@pytest.mark.registry
def test_shared_layers_and_nested_index(target_registry: Registry) -> None:
    base = random_blob(2048, "base")
    amd = push_image(target_registry, "shared", shared_layers=[base], layers=[64])
    arm = push_image(
        target_registry, "shared", shared_layers=[base], layers=[64], platform="linux/arm64"
    )
    assert amd.layers[0].digest == arm.layers[0].digest == sha256_digest(base)
    inner = push_index(target_registry, "shared", images=[amd, arm])
    outer = push_index(target_registry, "shared", images=[inner], tag="nested")
    assert outer.manifest["mediaType"] == OCI_INDEX
    assert [m.digest for m in outer.manifests()] == [
        outer.digest,
        inner.digest,
        amd.digest,
        arm.digest,
    ]
    assert len(outer.blobs) == 5  # base + 2 configs + 2 own layers
    assert_served(target_registry, outer)


@pytest.mark.registry
def test_index_over_missing_child_is_refused(source_registry: Registry) -> None:
    image = push_image(source_registry, "a", layers=[10])
    ghost = PushedImage(
        host=image.host,
        repo="a",
        tag=None,
        digest=sha256_digest(b"ghost"),
        manifest_bytes=b"ghost",
        media_type=image.media_type,
        size=5,
        blobs=(),
        platform={"architecture": "s390x", "os": "linux"},
    )
    with pytest.raises(AssertionError, match="400"):
        push_index(source_registry, "a", images=[image, ghost], tag="broken")


@pytest.mark.registry
def test_chunked_upload(token_registry: Registry) -> None:
    data = random_blob(200_000, "chunks")
    with token_registry.client() as client:
        digest = push_blob_chunked(client, "chunked/blob", data, chunk_size=65_536)
        assert digest == sha256_digest(data)
        assert fetch_blob(client, "chunked/blob", digest) == data
    image = push_image(token_registry, "chunked/img", tag="c", layers=[150_000], chunked=True)
    assert_served(token_registry, image)


@pytest.mark.parametrize("media", ["oci", "docker"])
@pytest.mark.registry
def test_foreign_layer_is_listed_not_uploaded(target_registry: Registry, media: Media) -> None:
    image = push_image(
        target_registry, "win/app", tag="f", layers=[100], media=media, foreign_layer=True
    )
    [foreign] = image.foreign_layers
    assert foreign.media_type == (
        DOCKER_FOREIGN_LAYER if media == "docker" else OCI_LAYER_NONDISTRIBUTABLE_GZIP
    )
    assert foreign not in image.blobs
    assert_served(target_registry, image)
    layers = json.loads(skopeo_inspect_raw(image.ref, registry=target_registry))["layers"]
    assert layers[-1]["urls"] == list(foreign.urls)
    with target_registry.client() as client:
        assert not blob_exists(client, "win/app", foreign.digest)


@pytest.mark.registry
def test_foreign_layer_needs_the_urls_allow_config(registry_factory: RegistryFactory) -> None:
    strict = registry_factory(foreign_urls_allow=None)
    with pytest.raises(AssertionError, match="MANIFEST_BLOB_UNKNOWN"):
        push_image(strict, "win/app", foreign_layer=True)


@pytest.mark.registry
def test_oci_manifests_need_an_accept_header(source_registry: Registry) -> None:
    """distribution 2.8 quirk the copier must know: no OCI type in Accept → 404 for OCI
    manifests, and Docker schema 2 gets down-converted to schema 1 (another digest)."""
    oci = push_image(source_registry, "accept", tag="oci", media="oci")
    docker = push_image(source_registry, "accept", tag="docker", media="docker")
    with source_registry.client() as client:
        assert client.get(f"/v2/accept/manifests/{oci.digest}").status_code == 404
        plain = client.get("/v2/accept/manifests/docker")
        assert plain.status_code == 200
        assert sha256_digest(plain.content) != docker.digest
        assert manifest_exists(client, "accept", docker.digest)
        assert (
            fetch_manifest(client, "accept", "docker", accept=MANIFEST_ACCEPT).digest
            == docker.digest
        )


# --- auth


@pytest.mark.registry
def test_htpasswd_rejects_wrong_and_accepts_right(target_registry: Registry) -> None:
    with target_registry.client(anonymous=True) as client:
        response = client.get("/v2/")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    with target_registry.client(password="wrong") as client:
        assert client.get("/v2/").status_code == 401
    with target_registry.client() as client:
        assert client.get("/v2/").status_code == 200
    htpasswd = (target_registry.directory / "htpasswd").read_text()
    assert htpasswd.startswith(f"{target_registry.username}:$2b$")


@pytest.mark.registry
def test_token_registry_rejects_wrong_credentials_and_accepts_right(
    token_registry: Registry,
) -> None:
    server = token_registry.token_server
    assert server is not None and server.tls
    image = push_image(token_registry, "secure/app", tag="v1")

    with token_registry.client(anonymous=True) as client:
        response = client.get("/v2/secure/app/tags/list")
        assert response.status_code == 401
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith(f'Bearer realm="{server.realm}",service="{server.service}"')
        assert 'scope="repository:secure/app:pull"' in challenge
        assert 'error="insufficient_scope"' in challenge

    with token_registry.client(password="wrong") as client:
        response = client.get("/v2/secure/app/tags/list")
        assert response.status_code == 401
        assert str(response.url).startswith(server.realm)  # the token server said no

    with token_registry.client() as client:
        assert list_tags(client, "secure/app") == ["v1"]

    requests = server.requests
    anonymous = [r for r in requests if r.username is None]
    assert anonymous and all(r.access == () and r.status == 200 for r in anonymous)
    wrong = [r for r in requests if r.status == 401]
    assert wrong and all(r.username == token_registry.username for r in wrong)
    granted = [r for r in requests if r.authenticated]
    assert ("repository", "secure/app", ("pull", "push")) in [a for r in granted for a in r.access]

    # skopeo agrees: right credentials work (above, via assert_served), wrong ones do not.
    assert_served(token_registry, image)
    assert token_registry.username is not None
    with pytest.raises(SkopeoError, match=r"(?i)unauthorized|authentication required|401"):
        skopeo_raw_digest(
            image.ref, registry=token_registry, creds=(token_registry.username, "wrong")
        )


@pytest.mark.registry
def test_token_kid_is_libtrust_format(token_server: TokenServer) -> None:
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", server_kid := token_server.key_id)
    token = token_server.issue("kferry", [])
    header = json.loads(_b64url_decode(token.split(".")[0]))
    assert header == {"typ": "JWT", "alg": "ES256", "kid": server_kid}
    assert libtrust_key_id(token_server._key.public_key()) == server_kid


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.registry
@pytest.mark.parametrize(
    ("algorithm", "mode"), [("RS256", "kid"), ("ES256", "x5c"), ("RS256", "x5c")]
)
def test_token_signing_variants_are_accepted(
    tmp_path: Path, algorithm: Algorithm, mode: KeyIdMode
) -> None:
    server = start_token_server(tmp_path / "ts", algorithm=algorithm, key_id_mode=mode)
    try:
        with start_registry(
            tmp_path / "reg", tls=True, auth="token", token_server=server
        ) as registry:
            push_image(registry, "v/a", tag="t")
            with registry.client() as client:
                assert list_tags(client, "v/a") == ["t"]
    finally:
        server.stop()


@pytest.mark.registry
def test_token_expiry_has_sixty_seconds_leeway(
    token_registry: Registry, token_server: TokenServer
) -> None:
    push_image(token_registry, "exp/a", tag="t")
    access = [("repository", "exp/a", ["pull"])]
    with httpx.Client(base_url=token_registry.url, verify=token_registry.verify) as client:

        def status(token: str) -> int:
            return client.get(
                "/v2/exp/a/tags/list", headers={"Authorization": f"Bearer {token}"}
            ).status_code

        assert status(token_server.issue("kferry", access)) == 200
        assert status(token_server.issue("kferry", access, expires_in=-30)) == 200
        assert status(token_server.issue("kferry", access, expires_in=-90)) == 401
        assert status(token_server.issue("kferry", access, audience="other")) == 401


@pytest.mark.registry
def test_token_server_failure_is_visible(
    token_registry: Registry, token_server: TokenServer
) -> None:
    token_server.fail_next(1, status=503)
    with token_registry.client() as client:
        assert client.get("/v2/x/tags/list").status_code == 503
        assert client.get("/v2/x/tags/list").status_code == 404  # recovered


# --- FlakyProxy


@pytest.mark.registry
def test_proxy_429_then_recovers(source_registry: Registry, flaky_source: FlakyProxy) -> None:
    image = push_image(source_registry, "flaky/app", tag="v1")
    flaky_source.fail_next(2, status=429, retry_after=3, path="/manifests/")
    with source_registry.client(base_url=flaky_source.url) as client:
        url = "/v2/flaky/app/manifests/v1"
        first = client.get(url, headers={"Accept": MANIFEST_ACCEPT})
        assert first.status_code == 429
        assert first.headers["Retry-After"] == "3"
        assert first.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert client.get(url, headers={"Accept": MANIFEST_ACCEPT}).status_code == 429
        # Other paths are not affected.
        assert client.get("/v2/").status_code == 200
        ok = client.get(url, headers={"Accept": MANIFEST_ACCEPT})
        assert ok.status_code == 200 and ok.content == image.manifest_bytes
        assert ok.headers["Docker-Content-Digest"] == image.digest
    assert flaky_source.status_counts() == {429: 2, 200: 2}
    assert flaky_source.injected() == 2
    # skopeo through the recovered proxy sees the same digest.
    assert skopeo_raw_digest(flaky_source.ref("flaky/app", "v1"), registry=None) == image.digest


@pytest.mark.registry
def test_proxy_fail_for_a_while(source_registry: Registry, flaky_source: FlakyProxy) -> None:
    flaky_source.fail_for(0.3, status=503)
    with source_registry.client(base_url=flaky_source.url) as client:
        assert client.get("/v2/").status_code == 503
        time.sleep(0.35)
        assert client.get("/v2/").status_code == 200


@pytest.mark.registry
def test_proxy_drop_mid_body_then_range_resume(
    target_registry: Registry, make_flaky_proxy: ProxyFactory
) -> None:
    proxy = make_flaky_proxy(target_registry)
    data = random_blob(1_000_000, "big")
    image = push_image(target_registry, "big/blob", layers=[data])
    digest = image.layers[0].digest
    proxy.drop_next(after_bytes=300_000)
    with target_registry.client(base_url=proxy.url) as client:
        received = bytearray()
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream("GET", f"/v2/big/blob/blobs/{digest}") as response,
        ):
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received.extend(chunk)
        assert len(received) == 300_000
        rest = client.get(
            f"/v2/big/blob/blobs/{digest}", headers={"Range": f"bytes={len(received)}-"}
        )
        assert rest.status_code == 206
        assert bytes(received) + rest.content == data
    [dropped] = [r for r in proxy.requests if r.fault == "drop_response"]
    assert dropped.body_bytes == 300_000


@pytest.mark.registry
def test_proxy_drop_upload_then_retry(source_registry: Registry, flaky_source: FlakyProxy) -> None:
    flaky_source.drop_upload_next(after_bytes=10_000, method="PUT")
    with source_registry.client(base_url=flaky_source.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            push_image(source_registry, "up/a", layers=[50_000], client=client)
        image = push_image(source_registry, "up/a", tag="ok", layers=[50_000], client=client)
    assert_served(source_registry, image)
    assert flaky_source.status_counts()[0] == 1


@pytest.mark.registry
def test_proxy_rewrites_location_and_passes_token_challenges(
    token_registry: Registry, make_flaky_proxy
) -> None:
    proxy = make_flaky_proxy(token_registry)
    with token_registry.client(base_url=proxy.url) as client:
        start = client.post("/v2/via/proxy/blobs/uploads/")
        assert start.status_code == 202
        assert start.headers["Location"].startswith(f"{proxy.url}/v2/via/proxy/blobs/uploads/")
        image = push_image(
            token_registry, "via/proxy", tag="p", layers=[5000], chunked=True, client=client
        )
    assert 401 in proxy.status_counts()  # challenges went through the proxy untouched
    assert_served(token_registry, image)


@pytest.mark.registry
def test_proxy_under_concurrency(source_registry: Registry, flaky_source: FlakyProxy) -> None:
    images = [push_image(source_registry, "conc", layers=[20_000 + n]) for n in range(4)]
    blobs = [blob for image in images for blob in image.blobs]
    flaky_source.fail_next(5, status=503, path="/blobs/")

    def fetch(client: httpx.Client, digest: str) -> bytes:
        for _ in range(10):
            response = client.get(f"/v2/conc/blobs/{digest}")
            if response.status_code == 200:
                return response.content
        raise AssertionError("never recovered")

    with source_registry.client(base_url=flaky_source.url) as client, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda blob: fetch(client, blob.digest), blobs * 4))
    assert results == [blob.data for blob in blobs * 4]
    counts = flaky_source.status_counts()
    assert counts[503] == 5
    assert counts[200] == len(blobs) * 4


# --- skopeo copy (benchmark helper)


@pytest.mark.registry
def test_skopeo_copy_preserves_digests(
    source_registry: Registry, target_registry: Registry
) -> None:
    index = push_multiarch(source_registry, "copy/me", tag="v1", media="docker")
    result = skopeo_copy(
        index.tag_ref,
        target_registry.ref("mirrored/me", "v1"),
        src_registry=source_registry,
        dst_registry=target_registry,
    )
    assert result.seconds > 0
    assert (
        skopeo_raw_digest(target_registry.ref("mirrored/me", "v1"), registry=target_registry)
        == index.digest
    )
    assert_copied(index, target_registry, "mirrored/me", tag="v1", check_blob_bytes=True)
    with pytest.raises(RegistryError, match=r"missing|MANIFEST_UNKNOWN|NAME_UNKNOWN"):
        assert_copied(index, target_registry, "elsewhere")


@pytest.mark.registry
def test_no_registry_process_outlives_its_fixture(registry_factory: RegistryFactory) -> None:
    registry = registry_factory()
    assert registry.process is not None
    pid = registry.process.pid
    registry.stop()
    alive = subprocess.run(["kill", "-0", str(pid)], capture_output=True, check=False)
    assert alive.returncode != 0


@pytest.mark.registry
def test_token_server_refresh_token_grant(
    token_registry: Registry, token_server: TokenServer
) -> None:
    """The OAuth2 form flow Docker uses for identity tokens: password grant with
    access_type=offline hands out a refresh token; the refresh grant turns it into tokens."""
    push_image(token_registry, "oauth/a", tag="t")
    form = {
        "grant_type": "password",
        "username": token_registry.username or "",
        "password": token_registry.password or "",
        "service": token_server.service,
        "scope": "repository:oauth/a:pull",
        "access_type": "offline",
        "client_id": "test",
    }
    with httpx.Client(verify=token_registry.verify) as client:
        first = client.post(token_server.realm, data=form)
        assert first.status_code == 200
        refresh = first.json()["refresh_token"]
        refreshed = client.post(
            token_server.realm,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "service": token_server.service,
                "scope": "repository:oauth/a:pull",
                "client_id": "test",
            },
        )
        assert refreshed.status_code == 200
        token = refreshed.json()["access_token"]
        tags = client.get(
            f"{token_registry.url}/v2/oauth/a/tags/list",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert tags.json()["tags"] == ["t"]
        bad = client.post(
            token_server.realm, data={"grant_type": "refresh_token", "refresh_token": "nope"}
        )
        assert bad.status_code == 401
    assert [r.status for r in token_server.requests if r.method == "POST"] == [200, 200, 401]


@pytest.mark.registry
def test_docker_config_for_registries(
    tmp_path: Path, source_registry: Registry, target_registry: Registry, token_registry: Registry
) -> None:
    directory = write_docker_config(
        tmp_path / "docker",
        source_registry,
        target_registry,
        token_registry,
        identity_tokens={token_registry.host: "refresh-me"},
    )
    auths = json.loads((directory / "config.json").read_text())["auths"]
    assert source_registry.host not in auths  # anonymous
    user, _, password = (
        base64.b64decode(auths[target_registry.host]["auth"]).decode().partition(":")
    )
    assert (user, password) == (target_registry.username, target_registry.password)
    assert auths[token_registry.host]["identitytoken"] == "refresh-me"
