"""Signatures, attestations, SBOMs and OCI referrers travel with their images.

Images are signed and attested in the source registry by the real cosign (built from its Go
module, ``scripts/peers cosign``): the tag scheme (``sha256-<hex>.sig``/``.att``) and, with
``--registry-referrers-mode=oci-1-1``, an OCI 1.1 referrer that cosign lists in the referrers
tag schema (``sha256-<hex>``), since docker-registry 2.8 has no referrers API. cosign itself
then verifies them in the target: after ``mirror``, and after ``bundle save`` + ``bundle
load``. ``--no-referrers`` leaves them behind.
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
    push_blob,
    push_image,
    push_manifest,
    sha256_digest,
)
from tests.support.proxy import ProxyFactory
from tests.support.registry import Registry

pytestmark = pytest.mark.registry

PREDICATE = {"builder": "kferry-test", "reviewed": True}


def _tag(digest: str, suffix: str = "") -> str:
    return digest.replace(":", "-") + (f".{suffix}" if suffix else "")


@pytest.fixture(scope="session")
def cosign_bin() -> Path:
    return cosign_binary()


@pytest.fixture
def cosign(
    cosign_bin: Path, tmp_path: Path, source_registry: Registry, target_registry: Registry
) -> Cosign:
    return Cosign(cosign_bin, tmp_path / "cosign", [source_registry, target_registry])


@pytest.fixture
def signed(source_registry: Registry, cosign: Cosign, tmp_path: Path) -> dict[str, PushedImage]:
    """``legacy``: signed and attested by tag scheme; ``oci``: signed as an OCI 1.1 referrer;
    ``plain``: not signed at all."""
    images = {
        "legacy": push_image(source_registry, "team/signed", tag="v1", layers=(2048, 4096)),
        "oci": push_image(source_registry, "team/oci-signed", tag="v1", layers=(3000,)),
        "plain": push_image(source_registry, "team/plain", tag="v1", layers=(1500,)),
    }
    predicate = tmp_path / "predicate.json"
    predicate.write_text(json.dumps(PREDICATE))
    legacy = source_registry.ref("team/signed", images["legacy"].digest)
    cosign.sign(legacy)
    cosign.attest(legacy, predicate)
    cosign.sign(source_registry.ref("team/oci-signed", images["oci"].digest), oci11=True)
    return images


def _refs(source: Registry, images: dict[str, PushedImage]) -> list[str]:
    return [source.ref(i.repo, i.tag or i.digest) for i in images.values()]


def _login(target: Registry) -> tuple[list[str], bytes]:
    return target.login_args(), target.password_stdin()


def _mirror(
    source: Registry, target: Registry, images: dict[str, PushedImage], lock: Path, *extra: str
) -> dict[str, Any]:
    login, stdin = _login(target)
    res = run_kferry(
        "mirror", *_refs(source, images), "--plain-http", source.host,
        "--to", f"{target.host}/proj", *login, "-o", "json", "--lock", str(lock), *extra,
        stdin=stdin,
    )  # fmt: skip
    assert res.code == 0, res.err + res.out
    summary: dict[str, Any] = json.loads(res.out)
    return summary


def _in_target(target: Registry, source: Registry, image: PushedImage, project: str) -> str:
    return target.ref(f"{project}/{source.host.replace(':', '-')}/{image.repo}", image.digest)


def _assert_verified(cosign: Cosign, ref: str, *, oci11: bool = False, att: bool = False) -> None:
    res = cosign.verify(ref, oci11=oci11)
    assert res.returncode == 0, res.stderr
    if att:
        res = cosign.verify_attestation(ref)
        assert res.returncode == 0, res.stderr
        payload = json.loads(res.stdout.splitlines()[0])["payload"]
        assert "kferry-test" in __import__("base64").b64decode(payload).decode()


def test_cosign_verifies_in_the_source(
    signed: dict[str, PushedImage], source_registry: Registry, cosign: Cosign
) -> None:
    """The fixture is what it claims: signatures cosign accepts, and an unsigned image
    cosign refuses (so a verify that passes in the target means something)."""
    _assert_verified(cosign, source_registry.ref("team/signed", signed["legacy"].digest), att=True)
    oci = source_registry.ref("team/oci-signed", signed["oci"].digest)
    _assert_verified(cosign, oci, oci11=True)
    tags = list_tags(source_registry.client(), "team/oci-signed")
    assert _tag(signed["oci"].digest) in tags  # the referrers tag schema, not a .sig
    assert cosign.verify(source_registry.ref("team/plain", signed["plain"].digest)).returncode


def test_mirror_carries_signatures_attestations_and_referrers(
    signed: dict[str, PushedImage],
    source_registry: Registry,
    target_registry: Registry,
    cosign: Cosign,
    tmp_path: Path,
) -> None:
    lock = tmp_path / "lock.json"
    summary = _mirror(source_registry, target_registry, signed, lock)
    assert summary["copied"] == 3 and summary["referrers"] == 3
    legacy = _in_target(target_registry, source_registry, signed["legacy"], "proj")
    _assert_verified(cosign, legacy, att=True)
    _assert_verified(
        cosign, _in_target(target_registry, source_registry, signed["oci"], "proj"), oci11=True
    )
    entries = {e["source"]: e for e in json.loads(lock.read_text())["images"]}
    kinds = {
        e["source"].split("/")[-1]: sorted(r["kind"] for r in e.get("referrers", []))
        for e in entries.values()
    }
    assert kinds == {"signed:v1": ["att", "sig"], "oci-signed:v1": ["referrers"], "plain:v1": []}
    sig = next(r for e in entries.values() for r in e.get("referrers", []) if r["kind"] == "sig")
    assert sig["tag"] == _tag(signed["legacy"].digest, "sig")

    # A rerun copies nothing again, the signatures included.
    again = _mirror(source_registry, target_registry, signed, lock)
    assert again["copied"] == 0 and again["bytes_sent"] == 0 and again["referrers"] == 3


def test_bundle_save_and_load_carry_them(
    signed: dict[str, PushedImage],
    source_registry: Registry,
    target_registry: Registry,
    cosign: Cosign,
    tmp_path: Path,
) -> None:
    out = tmp_path / "b.tar"
    res = run_kferry(
        "bundle", "save", *_refs(source_registry, signed), "--plain-http", source_registry.host,
        "-o", str(out), "--json",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert json.loads(res.out)["referrers"] == 3
    verified = run_kferry("bundle", "verify", str(out), "-o", "json")
    assert verified.code == 0, verified.out + verified.err
    assert json.loads(verified.out)["images"] == 3  # signatures checked, not counted

    login, stdin = _login(target_registry)
    lock = tmp_path / "lock.json"
    res = run_kferry(
        "bundle", "load", str(out), "--to", f"{target_registry.host}/air", *login,
        "-o", "json", "--lock", str(lock), stdin=stdin,
    )  # fmt: skip
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["images"] == 3 and summary["referrers"] == 3  # signatures are not images
    legacy = _in_target(target_registry, source_registry, signed["legacy"], "air")
    _assert_verified(cosign, legacy, att=True)
    _assert_verified(
        cosign, _in_target(target_registry, source_registry, signed["oci"], "air"), oci11=True
    )


def test_no_referrers_leaves_them_behind(
    signed: dict[str, PushedImage],
    source_registry: Registry,
    target_registry: Registry,
    cosign: Cosign,
    tmp_path: Path,
) -> None:
    summary = _mirror(
        source_registry, target_registry, signed, tmp_path / "lock.json", "--no-referrers"
    )
    assert summary["copied"] == 3 and summary["referrers"] == 0
    legacy = _in_target(target_registry, source_registry, signed["legacy"], "proj")
    assert cosign.verify(legacy).returncode != 0
    repo = f"proj/{source_registry.host.replace(':', '-')}/team/signed"
    assert list_tags(target_registry.client(), repo) == ["v1"]


def _artifact(registry: Registry, repo: str, subject: PushedImage, note: str) -> dict[str, Any]:
    """An OCI 1.1 artifact manifest whose subject is ``subject``; returns its descriptor."""
    client = registry.client()
    empty = push_blob(client, repo, b"{}")
    layer = note.encode()
    layer_digest = push_blob(client, repo, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.note",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [
            {"mediaType": "text/plain", "digest": layer_digest, "size": len(layer)},
        ],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
    }
    raw = json.dumps(manifest).encode()
    digest = push_manifest(client, repo, sha256_digest(raw), raw, OCI_MANIFEST)
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(raw),
        "artifactType": "application/vnd.example.note",
    }


def _list(registry: Registry, repo: str, subject: PushedImage, entries: list[Any]) -> None:
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    push_manifest(registry.client(), repo, _tag(subject.digest), raw, OCI_INDEX)


def test_referrers_list_in_the_target_is_merged_not_replaced(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    """The far side listed a referrer of its own: after the copy both are listed."""
    image = push_image(source_registry, "team/app", tag="v1")
    ours = _artifact(source_registry, "team/app", image, "from the source")
    _list(source_registry, "team/app", image, [ours])
    target_repo = f"proj/{source_registry.host.replace(':', '-')}/team/app"
    theirs = _artifact(target_registry, target_repo, image, "added on the far side")
    _list(target_registry, target_repo, image, [theirs])

    _mirror(source_registry, target_registry, {"app": image}, tmp_path / "lock.json")
    listing = fetch_manifest(target_registry.client(), target_repo, _tag(image.digest))
    digests = [m["digest"] for m in json.loads(listing.data)["manifests"]]
    assert sorted(digests) == sorted([ours["digest"], theirs["digest"]])
    fetch_manifest(target_registry.client(), target_repo, ours["digest"])  # copied by digest

    # Nothing new on a rerun: the merged list covers the source's, so it stays as it is.
    again = _mirror(source_registry, target_registry, {"app": image}, tmp_path / "lock.json")
    assert again["copied"] == 0
    after = fetch_manifest(target_registry.client(), target_repo, _tag(image.digest))
    assert after.digest == listing.digest


def test_platform_filter_keeps_the_referrers_list_of_a_single_image(
    source_registry: Registry, target_registry: Registry, tmp_path: Path
) -> None:
    """--platform filters indexes of platforms; a referrers list (an index without platforms)
    is copied whole, and the image keeps its digest, so its referrers still name it."""
    image = push_image(source_registry, "team/single", tag="v1", platform="linux/amd64")
    ours = _artifact(source_registry, "team/single", image, "sbom of a single image")
    _list(source_registry, "team/single", image, [ours])
    summary = _mirror(
        source_registry, target_registry, {"single": image}, tmp_path / "lock.json",
        "--platform", "linux/amd64",
    )  # fmt: skip
    assert summary["copied"] == 1 and summary["referrers"] == 1, summary
    target_repo = f"proj/{source_registry.host.replace(':', '-')}/team/single"
    listing = fetch_manifest(target_registry.client(), target_repo, _tag(image.digest))
    assert [m["digest"] for m in json.loads(listing.data)["manifests"]] == [ours["digest"]]


def test_registry_that_will_not_list_tags_is_asked_tag_by_tag(
    source_registry: Registry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    """Tags are looked up in the repository's tag list; where listing is refused, each
    cosign tag is asked for by itself, and the signature still comes along."""
    image = push_image(source_registry, "team/nolist", tag="v1")
    sig = _artifact(source_registry, "team/nolist", image, "a signature")
    raw = fetch_manifest(source_registry.client(), "team/nolist", sig["digest"]).data
    push_manifest(
        source_registry.client(), "team/nolist", _tag(image.digest, "sig"), raw, OCI_MANIFEST
    )
    proxy = make_flaky_proxy(source_registry)
    proxy.fail_for(120, status=403, path=r"/tags/list")
    login, stdin = _login(target_registry)
    res = run_kferry(
        "mirror", proxy.ref("team/nolist", "v1"), "--plain-http", proxy.host,
        "--to", f"{target_registry.host}/proj", *login, "-o", "json",
        "--lock", str(tmp_path / "lock.json"), stdin=stdin,
    )  # fmt: skip
    assert res.code == 0, res.err + res.out
    assert json.loads(res.out)["referrers"] == 1
    assert any(r.method == "HEAD" and r.path.endswith(".sig") for r in proxy.requests)
    target_repo = f"proj/{proxy.host.replace(':', '-')}/team/nolist"
    assert _tag(image.digest, "sig") in list_tags(target_registry.client(), target_repo)
