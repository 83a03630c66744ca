"""OCI 1.1 referrers through a registry that has the referrers API.

docker-registry 2.8 (the other tests' registry) has no referrers API, so there kferry reads
and writes only the referrers tag schema. Here the source or the target is the peer of
:mod:`tests.support.referrers_registry` (go-containerregistry's registry with
``GET /v2/<name>/referrers/<digest>`` on): an artifact pushed with a ``subject`` and no
tag-schema index is known only to that API, so a copy that carries it proves kferry read the
API; a copy to it is checked through the API itself. The real cosign signs there with
``--registry-referrers-mode=oci-1-1`` and verifies in the docker-registry target.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kferry.transfer.media import OCI_INDEX, OCI_MANIFEST
from tests.conftest import run_kferry
from tests.support.cosign import Cosign, cosign_binary
from tests.support.images import (
    PushedImage,
    fetch_manifest,
    list_tags,
    manifest_exists,
    push_blob,
    push_image,
    push_manifest,
    sha256_digest,
)
from tests.support.proxy import FlakyProxy, ProxyFactory
from tests.support.referrers_registry import ReferrersRegistry, start_referrers_registry
from tests.support.registry import Registry

pytestmark = pytest.mark.registry

NOTE = "application/vnd.example.note"


def _tag(digest: str) -> str:
    return digest.replace(":", "-")


def _descriptor(image: PushedImage) -> dict[str, Any]:
    return {"mediaType": image.media_type, "digest": image.digest, "size": image.size}


def _artifact(
    registry: Registry, repo: str, subject: PushedImage | dict[str, Any], note: str
) -> str:
    """Push an OCI 1.1 artifact whose subject is ``subject`` (an image or a descriptor), by
    digest, with no tag and no tag-schema index; its digest."""
    client = registry.client()
    empty = push_blob(client, repo, b"{}")
    layer = note.encode()
    layer_digest = push_blob(client, repo, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": NOTE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "text/plain", "digest": layer_digest, "size": len(layer)}],
        "subject": subject if isinstance(subject, dict) else _descriptor(subject),
    }
    raw = json.dumps(manifest).encode()
    return push_manifest(client, repo, sha256_digest(raw), raw, OCI_MANIFEST)


def _manifest_descriptor(registry: Registry, repo: str, digest: str) -> dict[str, Any]:
    data = fetch_manifest(registry.client(), repo, digest).data
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data)}


def _api(registry: Registry, repo: str, digest: str) -> list[str]:
    """What the registry's referrers API lists for ``digest``."""
    resp = registry.client().get(f"/v2/{repo}/referrers/{digest}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith(OCI_INDEX)
    return sorted(m["digest"] for m in resp.json()["manifests"])


def _schema(registry: Registry, repo: str, digest: str) -> list[str]:
    """What the referrers tag schema (the index tagged ``sha256-<hex>``) lists."""
    listing = fetch_manifest(registry.client(), repo, _tag(digest))
    return sorted(m["digest"] for m in json.loads(listing.data)["manifests"])


def _target_flags(target: Registry) -> tuple[list[str], bytes | None]:
    if target.username is None:
        return (["--ca-file", str(target.ca_file)] if target.ca_file else []), None
    return (
        ["--ca-file", str(target.ca_file), "--username", target.username, "--password-stdin"],
        f"{target.password}\n".encode(),
    )


def _mirror(
    source: Registry | FlakyProxy, target: Registry, refs: list[str], tmp_path: Path, *extra: str
) -> dict[str, Any]:
    login, stdin = _target_flags(target)
    tls = isinstance(source, Registry) and source.ca_file is not None
    plain = [] if tls else ["--plain-http", source.host]
    res = run_kferry(
        "mirror", *refs, *plain, "--to", f"{target.host}/proj", *login, "-o", "json",
        "--lock", str(tmp_path / "lock.json"), *extra, stdin=stdin,
    )  # fmt: skip
    assert res.code == 0, res.err + res.out
    summary: dict[str, Any] = json.loads(res.out)
    return summary


def _target_repo(source: Registry | FlakyProxy, repo: str) -> str:
    return f"proj/{source.host.replace(':', '-')}/{repo}"


def test_the_peer_has_the_api_and_docker_registry_has_not(
    referrers_registry: ReferrersRegistry, source_registry: Registry
) -> None:
    """What the other tests rely on: the peer lists a pushed subject's referrers without any
    tag-schema index; docker-registry answers the same request 404 (no API)."""
    image = push_image(referrers_registry, "team/app", tag="v1")
    assert _api(referrers_registry, "team/app", image.digest) == []
    note = _artifact(referrers_registry, "team/app", image, "a note")
    assert _api(referrers_registry, "team/app", image.digest) == [note]
    assert _tag(image.digest) not in list_tags(referrers_registry.client(), "team/app")

    other = push_image(source_registry, "team/app", tag="v1")
    resp = source_registry.client().get(f"/v2/team/app/referrers/{other.digest}")
    assert resp.status_code == 404


def test_mirror_reads_the_referrers_api(
    referrers_registry: ReferrersRegistry, target_registry: Registry, tmp_path: Path
) -> None:
    """Source with the API -> docker-registry: a referrer only the API lists arrives, listed
    in the target's tag schema, its blobs with it, and so does a referrer of that referrer
    (a signature of an SBOM); a rerun copies nothing."""
    image = push_image(referrers_registry, "team/app", tag="v1", layers=(2048,))
    note = _artifact(referrers_registry, "team/app", image, "known to the API only")
    of_note = _artifact(
        referrers_registry, "team/app",
        _manifest_descriptor(referrers_registry, "team/app", note), "signs the note",
    )  # fmt: skip
    refs = [referrers_registry.ref("team/app", "v1")]

    summary = _mirror(referrers_registry, target_registry, refs, tmp_path)
    assert summary["copied"] == 1 and summary["referrers"] == 2, summary
    repo = _target_repo(referrers_registry, "team/app")
    assert _schema(target_registry, repo, image.digest) == [note]
    assert _schema(target_registry, repo, note) == [of_note]
    copied = json.loads(fetch_manifest(target_registry.client(), repo, note).data)
    assert copied["subject"]["digest"] == image.digest
    lock = json.loads((tmp_path / "lock.json").read_text())
    assert [r["kind"] for r in lock["images"][0]["referrers"]] == ["referrers", "referrers"]

    again = _mirror(referrers_registry, target_registry, refs, tmp_path)
    assert again["copied"] == 0 and again["bytes_sent"] == 0 and again["referrers"] == 2


def test_cosign_oci11_signature_from_the_api_verifies_in_the_target(
    referrers_registry: ReferrersRegistry, target_registry: Registry, tmp_path: Path
) -> None:
    """The real cosign signs in the API registry (OCI 1.1 mode); after `mirror` to
    docker-registry, `cosign verify --key` accepts the image there."""
    cosign = Cosign(cosign_binary(), tmp_path / "cosign", [referrers_registry, target_registry])
    image = push_image(referrers_registry, "team/signed", tag="v1")
    cosign.sign(referrers_registry.ref("team/signed", image.digest), oci11=True)
    assert len(_api(referrers_registry, "team/signed", image.digest)) == 1

    summary = _mirror(
        referrers_registry, target_registry, [referrers_registry.ref("team/signed", "v1")],
        tmp_path,
    )  # fmt: skip
    assert summary["referrers"] == 1, summary
    repo = _target_repo(referrers_registry, "team/signed")
    res = cosign.verify(target_registry.ref(repo, image.digest), oci11=True)
    assert res.returncode == 0, res.stderr
    unsigned = push_image(target_registry, "other/unsigned", tag="v1")
    assert cosign.verify(target_registry.ref("other/unsigned", unsigned.digest)).returncode


def test_mirror_to_the_api_registry_lists_the_referrer_there(
    source_registry: Registry, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """docker-registry (tag schema) -> a TLS registry with the API: the target's referrers
    API lists the referrer (the registry indexed the pushed subject)."""
    image = push_image(source_registry, "team/app", tag="v1")
    note = _artifact(source_registry, "team/app", image, "listed by the tag schema")
    entry = {**_manifest_descriptor(source_registry, "team/app", note), "artifactType": NOTE}
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode()
    push_manifest(source_registry.client(), "team/app", _tag(image.digest), raw, OCI_INDEX)

    with start_referrers_registry(tmp_path_factory.mktemp("api-target"), tls=True) as target:
        refs = [source_registry.ref("team/app", "v1")]
        summary = _mirror(source_registry, target, refs, tmp_path)
        assert summary["copied"] == 1 and summary["referrers"] == 1, summary
        repo = _target_repo(source_registry, "team/app")
        assert _api(target, repo, image.digest) == [note]


def test_cosign_verifies_in_the_api_registry_after_mirror(
    source_registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    """Signed by the real cosign in docker-registry (OCI 1.1 mode: the tag schema there),
    mirrored to the registry with the API: cosign verifies it there (it asks that API)."""
    image = push_image(source_registry, "team/signed", tag="v1")
    with start_referrers_registry(tmp_path_factory.mktemp("api-target"), tls=True) as target:
        cosign = Cosign(cosign_binary(), tmp_path / "cosign", [source_registry, target])
        cosign.sign(source_registry.ref("team/signed", image.digest), oci11=True)
        refs = [source_registry.ref("team/signed", "v1")]
        assert _mirror(source_registry, target, refs, tmp_path)["referrers"] == 1
        repo = _target_repo(source_registry, "team/signed")
        assert len(_api(target, repo, image.digest)) == 1
        res = cosign.verify(target.ref(repo, image.digest), oci11=True)
        assert res.returncode == 0, res.stderr
        unsigned = push_image(target, "other/unsigned", tag="v1")
        assert cosign.verify(target.ref("other/unsigned", unsigned.digest), oci11=True).returncode


def test_no_referrers_leaves_the_api_referrers_behind(
    referrers_registry: ReferrersRegistry, target_registry: Registry, tmp_path: Path
) -> None:
    image = push_image(referrers_registry, "team/app", tag="v1")
    note = _artifact(referrers_registry, "team/app", image, "stays behind")
    summary = _mirror(
        referrers_registry, target_registry, [referrers_registry.ref("team/app", "v1")],
        tmp_path, "--no-referrers",
    )  # fmt: skip
    assert summary["copied"] == 1 and summary["referrers"] == 0
    repo = _target_repo(referrers_registry, "team/app")
    assert list_tags(target_registry.client(), repo) == ["v1"]
    assert not manifest_exists(target_registry.client(), repo, note)


def test_bundle_save_from_the_api_and_load(
    referrers_registry: ReferrersRegistry,
    target_registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    """bundle save reads the API; bundle load writes the referrer and its tag-schema list to
    docker-registry, and to a registry with the API, whose API then lists it."""
    image = push_image(referrers_registry, "team/app", tag="v1")
    note = _artifact(referrers_registry, "team/app", image, "in the bundle")
    out = tmp_path / "b.tar"
    res = run_kferry(
        "bundle", "save", referrers_registry.ref("team/app", "v1"),
        "--plain-http", referrers_registry.host, "-o", str(out), "--json",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert json.loads(res.out)["referrers"] == 1
    verified = run_kferry("bundle", "verify", str(out), "-o", "json")
    assert verified.code == 0, verified.out + verified.err

    login, stdin = _target_flags(target_registry)
    res = run_kferry(
        "bundle", "load", str(out), "--to", f"{target_registry.host}/air", *login,
        "-o", "json", "--lock", str(tmp_path / "lock.json"), stdin=stdin,
    )  # fmt: skip
    assert res.code == 0, res.err
    assert json.loads(res.out)["referrers"] == 1
    repo = f"air/{referrers_registry.host.replace(':', '-')}/team/app"
    assert _schema(target_registry, repo, image.digest) == [note]
    assert manifest_exists(target_registry.client(), repo, note)

    with start_referrers_registry(tmp_path_factory.mktemp("api-target"), tls=True) as api:
        res = run_kferry(
            "bundle", "load", str(out), "--to", f"{api.host}/air", "--ca-file", str(api.ca_file),
            "-o", "json", "--lock", str(tmp_path / "lock2.json"),
        )  # fmt: skip
        assert res.code == 0, res.err
        assert _api(api, repo, image.digest) == [note]


def test_a_paged_referrers_list_is_read_to_its_end(
    referrers_registry: ReferrersRegistry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    """The API may page a long list (``Link: <...>; rel="next"``): every page is read, so no
    referrer stays behind. Past 16 pages the image fails, it is not copied short."""
    image = push_image(referrers_registry, "team/app", tag="v1")
    notes = [_artifact(referrers_registry, "team/app", image, f"note {i}") for i in range(3)]
    proxy = make_flaky_proxy(referrers_registry)
    proxy.referrers_page_size = 1
    summary = _mirror(proxy, target_registry, [proxy.ref("team/app", "v1")], tmp_path)
    assert summary["referrers"] == 1, summary  # one list, of three
    assert _schema(target_registry, _target_repo(proxy, "team/app"), image.digest) == sorted(notes)
    pages = [r.path for r in proxy.requests if "/referrers/" in r.path]
    assert any(p.endswith("?page=2") for p in pages), pages

    other = push_image(referrers_registry, "team/long", tag="v1")
    for i in range(17):
        _artifact(referrers_registry, "team/long", other, f"note {i}")
    login, stdin = _target_flags(target_registry)
    res = run_kferry(
        "mirror", proxy.ref("team/long", "v1"), "--plain-http", proxy.host,
        "--to", f"{target_registry.host}/proj", *login, "--lock", str(tmp_path / "l2.json"),
        stdin=stdin,
    )  # fmt: skip
    assert res.code == 1, res.out + res.err
    assert "more than 16 pages of referrers" in res.out + res.err
    assert "Traceback" not in res.err
