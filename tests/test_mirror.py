"""`kferry mirror` against real registries, checked with skopeo (an independent client).

Source: plain HTTP distribution registry. Target: TLS from a test CA + htpasswd (or token
auth). Images are built by the test (random layers, shared bases, multi-arch indexes,
digest-only references) and pushed with raw registry API calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from kferry.transfer.media import ManifestError, parse_manifest
from tests.conftest import Result, run_kferry
from tests.support.images import (
    PushedImage,
    assert_copied,
    fetch_manifest,
    push_image,
    push_multiarch,
    random_blob,
)
from tests.support.proxy import ProxyFactory
from tests.support.registry import Registry, RegistryFactory, write_docker_config
from tests.support.skopeo import skopeo_raw_digest


def target_repo(source: PushedImage | str, src: Registry | str, project: str = "proj") -> str:
    """Where the `keep` layout puts a source repository."""
    host = src if isinstance(src, str) else src.host
    repo = source if isinstance(source, str) else source.repo
    return f"{project}/{host.replace(':', '-')}/{repo}"


def mirror(
    target: Registry,
    *args: str,
    lock: Path,
    to_host: str | None = None,
    password: str | None = None,
    env: dict[str, str] | None = None,
    login: bool = True,
) -> tuple[Result, dict[str, Any]]:
    cmd = ["mirror", *args, "--to", f"{to_host or target.host}/proj", "-o", "json"]
    cmd += ["--lock", str(lock)]
    if target.ca_file is not None:
        cmd += ["--ca-file", str(target.ca_file)]
    stdin = None
    if login and target.username:
        cmd += ["--username", target.username, "--password-stdin"]
        stdin = f"{password or target.password}\n".encode()
    res = run_kferry(*cmd, stdin=stdin, env=env)
    if target.password:
        assert target.password not in res.out + res.err
    summary = json.loads(res.out) if res.out.startswith("{") else {}
    return res, summary


def lock_entries(lock: Path) -> dict[str, dict[str, Any]]:
    return {e["source"]: e for e in json.loads(lock.read_text())["images"]}


@pytest.fixture
def images(source_registry: Registry) -> dict[str, PushedImage]:
    """A small Kubeflow-like set: shared base, nested paths, digest-only, multi-arch."""
    base = random_blob(300_000, "base")
    return {
        "tagged": push_image(
            source_registry,
            "kubeflow/notebook-controller",
            tag="v1.9.2",
            layers=[200_000, 50_000],
            shared_layers=[base],
        ),
        "deep": push_image(
            source_registry,
            "knative-releases/knative.dev/serving/cmd/queue",
            tag=None,
            layers=[120_000],
            shared_layers=[base],
            media="docker",
        ),
        "index": push_multiarch(
            source_registry, "istio/proxyv2", tag="1.22.1", layers=[80_000], shared_layers=[base]
        ),
        "list": push_multiarch(
            source_registry,
            "kserve/agent",
            tag="v0.13.1",
            layers=[60_000],
            media="docker",
            platforms=("linux/amd64", "linux/arm64/v8", "linux/ppc64le"),
        ),
    }


def source_refs(source: Registry, images: dict[str, PushedImage]) -> list[str]:
    out = []
    for img in images.values():
        out.append(img.tag_ref if img.tag else img.ref)
    return out


@pytest.mark.registry
def test_mirror_keeps_every_digest(
    source_registry: Registry,
    target_registry: Registry,
    images: dict[str, PushedImage],
    tmp_path: Path,
) -> None:
    refs = source_refs(source_registry, images)
    res, summary = mirror(
        target_registry, *refs, "--plain-http", source_registry.host, lock=tmp_path / "lock.json"
    )
    assert res.code == 0, res.err
    assert summary["copied"] == 4 and summary["failures"] == []
    locks = lock_entries(tmp_path / "lock.json")
    for img in images.values():
        repo = target_repo(img, source_registry)
        assert_copied(img, target_registry, repo, tag=img.tag)
        target_ref = f"{target_registry.host}/{repo}" + (
            f":{img.tag}" if img.tag else f"@{img.digest}"
        )
        # an independent client reads the same manifest bytes under the same digest
        assert skopeo_raw_digest(target_ref, registry=target_registry) == img.digest
        source = f"{source_registry.host}/{img.repo}" + (
            f":{img.tag}" if img.tag else f"@{img.digest}"
        )
        entry = locks[source]
        assert entry["target"] == target_ref
        assert entry["digest"] == img.digest
        assert entry["mediaType"] == img.media_type
        assert entry["size"] >= sum(b.size for b in img.blobs)
    # the shared base layer went over the wire once and was mounted elsewhere
    assert summary["bytes_skipped"] >= 300_000


@pytest.mark.registry
def test_rerun_sends_nothing_and_is_quick(
    source_registry: Registry,
    target_registry: Registry,
    images: dict[str, PushedImage],
    tmp_path: Path,
    make_flaky_proxy: ProxyFactory,
) -> None:
    refs = source_refs(source_registry, images)
    first, _ = mirror(
        target_registry, *refs, "--plain-http", source_registry.host, lock=tmp_path / "lock.json"
    )
    assert first.code == 0, first.err
    proxy = make_flaky_proxy(target_registry)
    start = time.monotonic()
    res, summary = mirror(
        target_registry,
        *refs,
        "--plain-http",
        source_registry.host,
        "--plain-http",
        proxy.host,
        to_host=proxy.host,
        lock=tmp_path / "lock2.json",
    )
    assert res.code == 0, res.err
    assert time.monotonic() - start < 10
    assert summary["copied"] == 0 and summary["skipped"] == 4 and summary["bytes_sent"] == 0
    # the only writes are the preflight's push probe: one upload started and cancelled
    writes = [r for r in proxy.requests if r.method not in ("GET", "HEAD")]
    assert [r.method for r in writes if r.status < 400] == ["POST", "DELETE"], writes
    assert all("/blobs/uploads/" in r.path and "mount=" not in r.path for r in writes), writes
    assert not any("/blobs/" in r.path for r in proxy.requests if r not in writes)


@pytest.mark.registry
def test_rerun_with_its_lock_heads_each_image_and_sees_a_moved_tag(
    source_registry: Registry,
    target_registry: Registry,
    images: dict[str, PushedImage],
    tmp_path: Path,
    make_flaky_proxy: ProxyFactory,
) -> None:
    # The source behind a recording proxy (both runs name it, so the lock's sources match).
    proxy = make_flaky_proxy(source_registry)
    refs = [proxy.ref(img.repo, img.tag or img.digest) for img in images.values()]
    lock = tmp_path / "lock.json"
    first, _ = mirror(target_registry, *refs, "--plain-http", proxy.host, lock=lock)
    assert first.code == 0, first.err
    old = images["tagged"]
    moved = push_image(source_registry, old.repo, tag=old.tag, layers=[70_000], seed="moved")
    assert moved.digest != old.digest
    before = len(proxy.requests)
    res, summary = mirror(target_registry, *refs, "--plain-http", proxy.host, lock=lock)
    assert res.code == 0, res.err
    assert summary["copied"] == 1 and summary["skipped"] == 3, summary
    asked = proxy.requests[before:]
    # the lock's images are asked for with HEAD; only the moved tag's manifest is read
    heads = {r.path for r in asked if r.method == "HEAD" and "/manifests/" in r.path}
    assert {f"/v2/{img.repo}/manifests/{img.tag or img.digest}" for img in images.values()} <= (
        heads
    )
    gets = [r.path for r in asked if r.method == "GET" and "/manifests/" in r.path]
    assert gets == [f"/v2/{old.repo}/manifests/{old.tag}"], gets
    # a repository without tags ("deep", by digest only: distribution answers its tag list
    # with 404 NAME_UNKNOWN) has no signature tags either: they are not asked one by one
    assert not [r.path for r in asked if "/manifests/sha256-" in r.path]
    assert_copied(moved, target_registry, target_repo(moved, proxy.host), tag=moved.tag)
    entry = lock_entries(lock)[proxy.ref(old.repo, str(old.tag))]
    assert entry["digest"] == moved.digest
    # the skipped images keep what the lock said about them
    index = images["index"]
    assert lock_entries(lock)[proxy.ref(index.repo, str(index.tag))]["mediaType"] == (
        index.media_type
    )


@pytest.mark.registry
def test_blobs_in_another_repository_are_mounted(
    source_registry: Registry,
    target_registry: Registry,
    tmp_path: Path,
    make_flaky_proxy: ProxyFactory,
) -> None:
    base = random_blob(500_000, "shared")
    a = push_image(source_registry, "team/a", tag="1", layers=[1000], shared_layers=[base])
    b = push_image(source_registry, "team/b", tag="1", layers=[2000], shared_layers=[base])
    proxy = make_flaky_proxy(target_registry)
    res, summary = mirror(
        target_registry,
        a.tag_ref,
        b.tag_ref,
        "--plain-http",
        source_registry.host,
        "--plain-http",
        proxy.host,
        "--jobs",
        "1",
        to_host=proxy.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    base_digest = next(bl.digest for bl in a.blobs if bl.size == 500_000)
    mounts = [
        r
        for r in proxy.requests
        if r.method == "POST" and "mount=" + base_digest in unquote(r.path)
    ]
    assert [m.status for m in mounts] == [201]
    uploads = [r for r in proxy.requests if r.method == "PUT" and base_digest in unquote(r.path)]
    assert len(uploads) == 1  # sent once, mounted the second time
    for img in (a, b):
        assert_copied(img, target_registry, target_repo(img, source_registry), tag="1")
    assert summary["bytes_sent"] < 2 * 500_000


@pytest.mark.registry
def test_platform_filter_records_the_new_digest(
    source_registry: Registry,
    target_registry: Registry,
    images: dict[str, PushedImage],
    tmp_path: Path,
) -> None:
    idx = images["index"]
    res, summary = mirror(
        target_registry,
        idx.tag_ref,
        "--plain-http",
        source_registry.host,
        "--platform",
        "linux/arm64",
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    assert any("digests must change" in n or "references by digest" in n for n in summary["notes"])
    entry = lock_entries(tmp_path / "lock.json")[idx.tag_ref]
    assert entry["sourceDigest"] == idx.digest and entry["digest"] != idx.digest
    repo = target_repo(idx, source_registry)
    raw = fetch_manifest(target_registry.client(), repo, "1.22.1").data
    platforms = [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]]
    assert platforms == ["arm64"]
    assert (
        skopeo_raw_digest(f"{target_registry.host}/{repo}:1.22.1", registry=target_registry)
        == entry["digest"]
    )


@pytest.mark.registry
def test_interrupted_copy_resumes(
    source_registry: Registry,
    target_registry: Registry,
    tmp_path: Path,
    make_flaky_proxy: ProxyFactory,
) -> None:
    big = push_image(source_registry, "big/image", tag="1", layers=[24_000_000, 3000])
    small = push_image(source_registry, "small/image", tag="1", layers=[3000])
    slow = make_flaky_proxy(source_registry)
    slow.bytes_per_second = 8_000_000  # ~3 s for the big layer: time to kill it mid-blob
    cmd = [
        sys.executable,
        "-m",
        "kferry",
        "mirror",
        slow.ref("big/image", "1"),
        slow.ref("small/image", "1"),
        "--plain-http",
        slow.host,
        "--to",
        f"{target_registry.host}/proj",
        "--ca-file",
        str(target_registry.ca_file),
        "--username",
        str(target_registry.username),
        "--password-stdin",
        "--lock",
        str(tmp_path / "lock.json"),
    ]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert proc.stdin is not None
    proc.stdin.write(f"{target_registry.password}\n".encode())
    proc.stdin.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _upload_bytes(target_registry) < 4_000_000:
        time.sleep(0.02)  # wait until the big layer is partly uploaded
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < _upload_bytes(target_registry) < 24_000_000, "not killed mid-blob"
    big_repo = target_repo("big/image", slow.host)
    client = target_registry.client()
    assert client.head(f"/v2/{big_repo}/blobs/{big.layers[0].digest}").status_code == 404

    slow.bytes_per_second = None
    res, summary = mirror(
        target_registry,
        slow.ref("big/image", "1"),
        slow.ref("small/image", "1"),
        "--plain-http",
        slow.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    assert summary["failures"] == []
    for img, name in ((big, "big/image"), (small, "small/image")):
        repo = target_repo(name, slow.host)
        assert_copied(img, target_registry, repo, tag="1", check_blob_bytes=True)
        assert (
            skopeo_raw_digest(f"{target_registry.host}/{repo}:1", registry=target_registry)
            == img.digest
        )


def _upload_bytes(registry: Registry) -> int:
    """Bytes in the registry's unfinished uploads. os.walk, not rglob: upload folders come
    and go while it looks (preflight's probe starts and cancels one), and os.walk skips a
    folder that vanished where rglob raises."""
    total = 0
    for folder, _dirs, files in os.walk(registry.storage):
        if "data" in files and Path(folder).parent.name == "_uploads":
            with contextlib.suppress(FileNotFoundError):
                total += (Path(folder) / "data").stat().st_size
    return total


@pytest.mark.registry
def test_target_answering_429_and_503_for_a_while(
    source_registry: Registry,
    target_registry: Registry,
    images: dict[str, PushedImage],
    tmp_path: Path,
    make_flaky_proxy: ProxyFactory,
) -> None:
    proxy = make_flaky_proxy(target_registry)
    proxy.fail_next(6, status=429, retry_after=1)
    proxy.fail_next(4, status=503, retry_after=None)
    refs = source_refs(source_registry, images)
    res, summary = mirror(
        target_registry,
        *refs,
        "--plain-http",
        source_registry.host,
        "--plain-http",
        proxy.host,
        to_host=proxy.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    assert summary["copied"] == 4 and summary["failures"] == []
    counts = proxy.status_counts()
    assert counts[429] == 6 and counts[503] == 4
    for img in images.values():
        assert_copied(img, target_registry, target_repo(img, source_registry), tag=img.tag)


@pytest.mark.registry
def test_dropped_source_connection_mid_blob_is_retried(
    source_registry: Registry,
    target_registry: Registry,
    tmp_path: Path,
    make_flaky_proxy: ProxyFactory,
) -> None:
    img = push_image(source_registry, "flaky/src", tag="1", layers=[2_000_000])
    proxy = make_flaky_proxy(source_registry)
    proxy.drop_next(2, after_bytes=500_000)
    res, _ = mirror(
        target_registry,
        proxy.ref("flaky/src", "1"),
        "--plain-http",
        proxy.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    assert proxy.injected() == 2
    assert_copied(
        img, target_registry, target_repo("flaky/src", proxy.host), tag="1", check_blob_bytes=True
    )


@pytest.mark.registry
def test_chunked_upload_of_large_blobs(
    source_registry: Registry,
    target_registry: Registry,
    tmp_path: Path,
    make_flaky_proxy: ProxyFactory,
) -> None:
    img = push_image(source_registry, "chunky", tag="1", layers=[3_500_000])
    proxy = make_flaky_proxy(target_registry)
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
    assert res.code == 0, res.err
    assert sum(1 for r in proxy.requests if r.method == "PATCH") == 4
    assert_copied(
        img, target_registry, target_repo(img, source_registry), tag="1", check_blob_bytes=True
    )


@pytest.mark.registry
def test_wrong_ca_says_ca_file(
    source_registry: Registry,
    target_registry: Registry,
    registry_factory: RegistryFactory,
    tmp_path: Path,
) -> None:
    img = push_image(source_registry, "x", tag="1")
    other = registry_factory(tls=True, name="other-ca")
    for ca in ([], ["--ca-file", str(other.ca_file)]):
        cmd = [
            "mirror",
            img.tag_ref,
            "--plain-http",
            source_registry.host,
            "--to",
            f"{target_registry.host}/proj",
            *ca,
            "--lock",
            str(tmp_path / "l.json"),
        ]
        res = run_kferry(*cmd)
        assert res.code == 1
        # the preflight says it once, on stderr (tests/test_preflight.py)
        assert "TLS certificate not trusted" in res.err and "--ca-file" in res.err
        assert "Traceback" not in res.err


@pytest.mark.registry
def test_ca_file_wins_over_environment(
    source_registry: Registry,
    target_registry: Registry,
    registry_factory: RegistryFactory,
    tmp_path: Path,
) -> None:
    img = push_image(source_registry, "x", tag="1")
    other = registry_factory(tls=True, name="env-ca")
    env = {
        "SSL_CERT_FILE": str(other.ca_file),
        "REQUESTS_CA_BUNDLE": str(other.ca_file),
        "CURL_CA_BUNDLE": str(other.ca_file),
        "SSL_CERT_DIR": str(tmp_path),
    }
    res, summary = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        env=env,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    assert summary["copied"] == 1


@pytest.mark.registry
def test_wrong_credentials_say_which_were_tried(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = push_image(source_registry, "x", tag="1")
    res, _ = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        password="wrong-password",
        lock=tmp_path / "lock.json",
    )
    assert res.code == 1
    error = res.err  # the preflight's one line (tests/test_preflight.py)
    assert "rejected the credentials" in error and f"user '{target_registry.username}'" in error
    assert "--username/--password-stdin" in error
    assert "wrong-password" not in res.out + res.err
    assert not (tmp_path / "lock.json").exists()


@pytest.mark.registry
def test_token_auth_with_docker_config(
    source_registry: Registry, token_registry: Registry, tmp_path: Path
) -> None:
    img = push_multiarch(source_registry, "tok/app", tag="2")
    config = write_docker_config(tmp_path / "docker", token_registry)
    res, _ = mirror(
        token_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        login=False,
        env={"DOCKER_CONFIG": str(config)},
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    repo = target_repo(img, source_registry)
    assert_copied(img, token_registry, repo, tag="2")
    assert (
        skopeo_raw_digest(f"{token_registry.host}/{repo}:2", registry=token_registry) == img.digest
    )
    server = token_registry.token_server
    assert server is not None
    assert any(f"repository:{repo}:pull,push" in unquote(r.path) for r in server.requests)

    (config / "config.json").write_text(
        json.dumps({"auths": {token_registry.host: {"username": "eve", "password": "nope"}}})
    )
    res, _ = mirror(
        token_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        login=False,
        env={"DOCKER_CONFIG": str(config)},
        lock=tmp_path / "lock2.json",
    )
    assert res.code == 1
    error = res.err  # the preflight's one line (tests/test_preflight.py)
    assert "rejected the credentials (user 'eve'" in error and "config.json" in error
    assert "nope" not in res.out + error


@pytest.mark.registry
def test_one_failure_does_not_stop_the_others(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    good = push_image(source_registry, "good", tag="1")
    missing = f"{source_registry.host}/nothing/here:1"
    res, summary = mirror(
        target_registry,
        missing,
        good.tag_ref,
        "--plain-http",
        source_registry.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 1
    assert summary["copied"] == 1
    assert [f["source"] for f in summary["failures"]] == [missing]
    assert "not found" in summary["failures"][0]["error"]
    assert list(lock_entries(tmp_path / "lock.json")) == [good.tag_ref]


@pytest.mark.registry
def test_foreign_layers_are_skipped_with_a_note(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = push_image(source_registry, "windows/servercore", tag="1", foreign_layer=True)
    res, summary = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    assert any("non-distributable layer" in n for n in summary["notes"])
    assert_copied(img, target_registry, target_repo(img, source_registry), tag="1")


@pytest.mark.registry
def test_images_from_manifests(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    a = push_image(source_registry, "kf/controller", tag="v1")
    b = push_image(source_registry, "kf/agent", tag="v2")
    manifests = tmp_path / "render.yaml"
    manifests.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: c, namespace: kubeflow}\n"
        "spec:\n  template:\n    spec:\n      containers:\n"
        f"      - name: c\n        image: {a.tag_ref}\n"
        f"        env: [{{name: AGENT_IMAGE, value: '{b.tag_ref}'}}]\n"
    )
    res, summary = mirror(
        target_registry,
        "--from",
        str(manifests),
        "--plain-http",
        source_registry.host,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    assert summary["copied"] == 2


def test_schema1_is_refused_with_a_reason() -> None:
    raw = json.dumps({"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": []}).encode()
    with pytest.raises(ManifestError, match="schema 1"):
        parse_manifest(raw, "application/vnd.docker.distribution.manifest.v1+prettyjws", "x")


@pytest.mark.registry
def test_credential_helper_from_docker_config(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = push_image(source_registry, "helper/app", tag="1")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "helper.log"
    helper = bin_dir / "docker-credential-kftest"
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 1\nread server\necho "$server" >> {log}\n'
        f'echo \'{{"Username":"{target_registry.username}",'
        f'"Secret":"{target_registry.password}"}}\'\n'
    )
    helper.chmod(0o755)
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(
        json.dumps({"credHelpers": {target_registry.host: "kftest"}})
    )
    env = {"DOCKER_CONFIG": str(config), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    res, summary = mirror(
        target_registry,
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        login=False,
        env=env,
        lock=tmp_path / "lock.json",
    )
    assert res.code == 0, res.err
    assert summary["copied"] == 1
    assert log.read_text().split() == [target_registry.host]


@pytest.mark.registry
def test_insecure_skips_verification_for_that_host_only(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    img = push_image(source_registry, "insecure/app", tag="1")
    cmd = [
        "mirror",
        img.tag_ref,
        "--plain-http",
        source_registry.host,
        "--to",
        f"{target_registry.host}/proj",
        "--username",
        str(target_registry.username),
        "--password-stdin",
        "-o",
        "json",
        "--lock",
        str(tmp_path / "lock.json"),
    ]
    stdin = f"{target_registry.password}\n".encode()
    res = run_kferry(*cmd, "--insecure", "some.other.host", stdin=stdin)
    assert res.code == 1 and "--ca-file" in res.err
    res = run_kferry(*cmd, "--insecure", target_registry.host, stdin=stdin)
    assert res.code == 0, res.out + res.err
    assert json.loads(res.out)["copied"] == 1
