"""Build test images and push them with raw registry API calls (no client library).

Blobs go up with a monolithic ``POST`` + ``PUT ?digest=`` (or, with ``chunked``, with
``PATCH`` chunks carrying ``Content-Range``), manifests with ``PUT /v2/NAME/manifests/REF``.
Config blobs are valid JSON image configs; layers are whatever bytes the caller gives (ints
become random bytes of that size) under the gzip layer media type. Foreign (non-distributable)
layers are listed with ``urls`` and never uploaded.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import random
import secrets
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from tests.support.registry import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
# distribution 2.8 answers 404 MANIFEST_UNKNOWN for an OCI manifest or index when the Accept
# header does not name its type: always send all of them.
MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

Media = Literal["oci", "docker"]
LayerSpec = bytes | int

_MEDIA = {
    "oci": {"manifest": OCI_MANIFEST, "index": OCI_INDEX, "config": OCI_CONFIG},
    "docker": {"manifest": DOCKER_MANIFEST, "index": DOCKER_MANIFEST_LIST, "config": DOCKER_CONFIG},
}
_LAYER = {"oci": OCI_LAYER_GZIP, "docker": DOCKER_LAYER_GZIP}
_FOREIGN_LAYER = {"oci": OCI_LAYER_NONDISTRIBUTABLE_GZIP, "docker": DOCKER_FOREIGN_LAYER}
_counter = itertools.count()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_blob(size: int, seed: int | str | bytes = 0) -> bytes:
    """``size`` pseudo-random (incompressible) bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


# --------------------------------------------------------------------------------------------
# Raw API calls


class RegistryError(AssertionError):
    """A registry answered something other than what the harness expected."""


def _check(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in expected:
        raise RegistryError(
            f"{response.request.method} {response.request.url} → {response.status_code}: "
            f"{response.text[:500]}"
        )
    return response


def _upload_location(response: httpx.Response) -> httpx.URL:
    # Location may be absolute or relative; keep it relative to the client's base URL.
    return response.request.url.join(response.headers["Location"])


def blob_exists(client: httpx.Client, repo: str, digest: str) -> bool:
    response = client.head(f"/v2/{repo}/blobs/{digest}")
    return _check(response, 200, 404).status_code == 200


def push_blob(client: httpx.Client, repo: str, data: bytes, *, skip_existing: bool = True) -> str:
    """Monolithic upload: ``POST /blobs/uploads/`` then ``PUT <location>?digest=``."""
    digest = sha256_digest(data)
    if skip_existing and blob_exists(client, repo, digest):
        return digest
    start = _check(client.post(f"/v2/{repo}/blobs/uploads/"), 202)
    location = _upload_location(start)
    done = client.put(
        location.copy_merge_params({"digest": digest}),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    _check(done, 201)
    if done.headers.get("Docker-Content-Digest", digest) != digest:
        raise RegistryError(f"registry computed {done.headers['Docker-Content-Digest']}")
    return digest


def push_blob_chunked(
    client: httpx.Client, repo: str, data: bytes, *, chunk_size: int = 64 * 1024
) -> str:
    """Chunked upload: ``POST``, then ``PATCH`` chunks with ``Content-Range``, then
    ``PUT ?digest=`` with an empty body. Follows the ``Location`` the registry returns and
    checks its ``Range`` header after each chunk."""
    digest = sha256_digest(data)
    start = _check(client.post(f"/v2/{repo}/blobs/uploads/"), 202)
    location = _upload_location(start)
    for offset in range(0, len(data), chunk_size):
        chunk = data[offset : offset + chunk_size]
        response = client.patch(
            location,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )
        _check(response, 202)
        expected_range = f"0-{offset + len(chunk) - 1}"
        if response.headers.get("Range") != expected_range:
            raise RegistryError(f"Range {response.headers.get('Range')} != {expected_range}")
        location = _upload_location(response)
    done = client.put(
        location.copy_merge_params({"digest": digest}),
        headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
    )
    _check(done, 201)
    return digest


def fetch_blob(client: httpx.Client, repo: str, digest: str) -> bytes:
    response = _check(client.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True), 200)
    return response.content


def push_manifest(
    client: httpx.Client, repo: str, reference: str, manifest: bytes, media_type: str
) -> str:
    """``PUT /v2/REPO/manifests/REFERENCE`` (a tag or the digest); returns the digest."""
    response = client.put(
        f"/v2/{repo}/manifests/{reference}",
        content=manifest,
        headers={"Content-Type": media_type},
    )
    _check(response, 201)
    digest = sha256_digest(manifest)
    if response.headers.get("Docker-Content-Digest", digest) != digest:
        raise RegistryError(f"registry computed {response.headers['Docker-Content-Digest']}")
    return digest


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: str  # sha256 of ``data`` (checked against Docker-Content-Digest)


def fetch_manifest(
    client: httpx.Client, repo: str, reference: str, *, accept: str = MANIFEST_ACCEPT
) -> FetchedManifest:
    response = _check(
        client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept}), 200
    )
    digest = sha256_digest(response.content)
    header = response.headers.get("Docker-Content-Digest", digest)
    if header != digest:
        raise RegistryError(f"Docker-Content-Digest {header} but body is {digest}")
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    return FetchedManifest(response.content, media_type, digest)


def manifest_exists(client: httpx.Client, repo: str, reference: str) -> bool:
    response = client.head(f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
    return _check(response, 200, 404).status_code == 200


def list_tags(client: httpx.Client, repo: str) -> list[str]:
    response = _check(client.get(f"/v2/{repo}/tags/list"), 200, 404)
    if response.status_code == 404:
        return []
    tags = response.json().get("tags") or []
    return sorted(str(t) for t in tags)


# --------------------------------------------------------------------------------------------
# Images


@dataclass(frozen=True)
class Blob:
    """A blob an image refers to. ``urls`` non-empty means a foreign layer, not uploaded."""

    digest: str
    size: int
    media_type: str
    data: bytes = field(repr=False)
    urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, data: bytes, media_type: str, urls: Iterable[str] = ()) -> Blob:
        return cls(sha256_digest(data), len(data), media_type, data, tuple(urls))

    @property
    def foreign(self) -> bool:
        return bool(self.urls)

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "size": self.size,
            "digest": self.digest,
        }
        if self.urls:
            desc["urls"] = list(self.urls)
        return desc


@dataclass(frozen=True)
class PushedImage:
    """An image manifest or an index as pushed.

    ``blobs`` are the uploaded blobs it needs (config first, then layers; for an index the
    union over its children, each once); foreign layers are in ``layers`` but not ``blobs``.
    """

    host: str
    repo: str
    tag: str | None
    digest: str
    manifest_bytes: bytes = field(repr=False)
    media_type: str
    size: int
    blobs: tuple[Blob, ...] = field(repr=False)
    config: Blob | None = field(default=None, repr=False)
    layers: tuple[Blob, ...] = field(default=(), repr=False)
    children: tuple[PushedImage, ...] = field(default=(), repr=False)
    platform: Mapping[str, str] | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)

    @property
    def ref(self) -> str:
        """``host/repo@digest``."""
        return f"{self.host}/{self.repo}@{self.digest}"

    @property
    def tag_ref(self) -> str:
        if self.tag is None:
            raise ValueError("pushed by digest only")
        return f"{self.host}/{self.repo}:{self.tag}"

    @property
    def manifest(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.manifest_bytes)
        return parsed

    @property
    def foreign_layers(self) -> tuple[Blob, ...]:
        return tuple(layer for layer in self.layers if layer.foreign)

    def manifests(self) -> Iterator[PushedImage]:
        """This manifest and every manifest below it, depth first."""
        yield self
        for child in self.children:
            yield from child.manifests()

    def descriptor(self) -> dict[str, Any]:
        """How an index refers to this manifest (with ``platform`` when known)."""
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "size": self.size,
            "digest": self.digest,
        }
        if self.platform is not None:
            desc["platform"] = dict(self.platform)
        return desc


def parse_platform(platform: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"linux/arm64/v8"`` or a mapping → ``{"architecture", "os"[, "variant"]}``."""
    if platform is None:
        return {"architecture": "amd64", "os": "linux"}
    if isinstance(platform, str):
        parts = platform.split("/")
        if len(parts) not in (2, 3):
            raise ValueError(f"platform {platform!r} is not OS/ARCH[/VARIANT]")
        result = {"architecture": parts[1], "os": parts[0]}
        if len(parts) == 3:
            result["variant"] = parts[2]
        return result
    return dict(platform)


def _diff_id(data: bytes) -> str:
    if data[:2] == b"\x1f\x8b":
        try:
            return sha256_digest(gzip.decompress(data))
        except (OSError, EOFError, zlib.error):
            pass
    return sha256_digest(data)


def image_config(platform: Mapping[str, str], layers: Sequence[bytes]) -> bytes:
    """A valid (minimal) image config JSON for ``platform`` with diff_ids for ``layers``."""
    config: dict[str, Any] = {
        "architecture": platform["architecture"],
        "os": platform["os"],
    }
    if "variant" in platform:
        config["variant"] = platform["variant"]
    config.update(
        {
            "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [_diff_id(layer) for layer in layers]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "kferry test"}]
            * len(layers),
        }
    )
    return json.dumps(config, indent=2, sort_keys=True).encode()


def _serialize(manifest: Mapping[str, Any]) -> bytes:
    # Indented like real tools do, so byte-for-byte copying is actually exercised (a client
    # that re-serializes the JSON changes the digest).
    return json.dumps(manifest, indent=3).encode()


def push_image(
    registry: Registry,
    repo: str,
    *,
    tag: str | None = None,
    layers: Sequence[LayerSpec] = (1024,),
    shared_layers: Sequence[bytes] = (),
    media: Media = "oci",
    platform: str | Mapping[str, str] | None = None,
    foreign_layer: bool | str = False,
    annotations: Mapping[str, str] | None = None,
    seed: int | str | None = None,
    chunked: bool = False,
    client: httpx.Client | None = None,
) -> PushedImage:
    """Push an image (config + layers + manifest) to ``registry`` and return what was pushed.

    ``layers``: bytes, or ints for random layers of that size (seeded by ``seed``, random by
    default). ``shared_layers`` come first (a base image other images share; pass the same
    bytes to several pushes). ``foreign_layer`` appends one foreign/non-distributable layer
    (``True`` or its URL) that is listed with ``urls`` and not uploaded. ``tag=None`` pushes
    by digest only. ``chunked`` uploads layers with PATCH chunks.
    """
    seed = secrets.token_hex(8) if seed is None else seed
    plat = parse_platform(platform)
    layer_data = list(shared_layers) + [
        random_blob(spec, f"{seed}-{n}") if isinstance(spec, int) else spec
        for n, spec in enumerate(layers)
    ]
    layer_blobs = [Blob.of(data, _LAYER[media]) for data in layer_data]
    if foreign_layer:
        data = random_blob(512, f"{seed}-foreign")
        url = (
            foreign_layer
            if isinstance(foreign_layer, str)
            else f"https://foreign.invalid/layers/{sha256_digest(data)}"
        )
        layer_blobs.append(Blob.of(data, _FOREIGN_LAYER[media], urls=[url]))
    config = Blob.of(image_config(plat, [b.data for b in layer_blobs]), _MEDIA[media]["config"])

    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": _MEDIA[media]["manifest"],
        "config": config.descriptor(),
        "layers": [blob.descriptor() for blob in layer_blobs],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    manifest_bytes = _serialize(manifest)

    uploaded = (config, *(b for b in layer_blobs if not b.foreign))
    with _client(registry, client) as c:
        for blob in uploaded:
            if chunked and blob is not config:
                if not blob_exists(c, repo, blob.digest):
                    push_blob_chunked(c, repo, blob.data, chunk_size=max(1, blob.size // 3 + 1))
            else:
                push_blob(c, repo, blob.data)
        digest = sha256_digest(manifest_bytes)
        push_manifest(c, repo, tag or digest, manifest_bytes, _MEDIA[media]["manifest"])
    return PushedImage(
        host=registry.host,
        repo=repo,
        tag=tag,
        digest=digest,
        manifest_bytes=manifest_bytes,
        media_type=_MEDIA[media]["manifest"],
        size=len(manifest_bytes),
        blobs=uploaded,
        config=config,
        layers=tuple(layer_blobs),
        platform=plat,
    )


def push_index(
    registry: Registry,
    repo: str,
    *,
    images: Sequence[PushedImage],
    tag: str | None = None,
    media: Media = "oci",
    annotations: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> PushedImage:
    """Push an OCI index (``media="oci"``) or Docker manifest list (``"docker"``) over
    ``images``, which must already be in ``repo`` (distribution 2.8 checks). Each child is
    listed with its platform; an index may also list indexes (no platform then)."""
    for image in images:
        if image.repo != repo or image.host != registry.host:
            raise ValueError(f"{image.ref} is not in {registry.host}/{repo}")
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": _MEDIA[media]["index"],
        "manifests": [image.descriptor() for image in images],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    manifest_bytes = _serialize(manifest)
    digest = sha256_digest(manifest_bytes)
    with _client(registry, client) as c:
        push_manifest(c, repo, tag or digest, manifest_bytes, _MEDIA[media]["index"])
    blobs: dict[str, Blob] = {}
    for image in images:
        for blob in image.blobs:
            blobs.setdefault(blob.digest, blob)
    return PushedImage(
        host=registry.host,
        repo=repo,
        tag=tag,
        digest=digest,
        manifest_bytes=manifest_bytes,
        media_type=_MEDIA[media]["index"],
        size=len(manifest_bytes),
        blobs=tuple(blobs.values()),
        children=tuple(images),
    )


def push_multiarch(
    registry: Registry,
    repo: str,
    *,
    tag: str | None = None,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64/v8"),
    layers: Sequence[LayerSpec] = (1024,),
    shared_layers: Sequence[bytes] = (),
    media: Media = "oci",
    client: httpx.Client | None = None,
) -> PushedImage:
    """One image per platform (pushed by digest) and an index over them."""
    with _client(registry, client) as c:
        images = [
            push_image(
                registry,
                repo,
                layers=layers,
                shared_layers=shared_layers,
                media=media,
                platform=plat,
                client=c,
            )
            for plat in platforms
        ]
        return push_index(registry, repo, images=images, tag=tag, media=media, client=c)


def assert_copied(
    image: PushedImage,
    target: Registry,
    repo: str,
    *,
    tag: str | None = None,
    check_blob_bytes: bool = False,
    client: httpx.Client | None = None,
) -> None:
    """``image`` (with everything below it) is in ``target/repo`` byte for byte: every
    manifest under its digest with the same bytes and media type, every uploaded blob present
    with its size (and bytes, with ``check_blob_bytes``), and ``tag`` naming the digest."""
    with _client(target, client) as c:
        for manifest in image.manifests():
            fetched = fetch_manifest(c, repo, manifest.digest)
            if fetched.data != manifest.manifest_bytes:
                raise RegistryError(f"{target.host}/{repo}@{manifest.digest}: other bytes")
            if fetched.media_type != manifest.media_type:
                raise RegistryError(
                    f"{target.host}/{repo}@{manifest.digest}: served as {fetched.media_type}"
                )
        for blob in image.blobs:
            response = _check(c.head(f"/v2/{repo}/blobs/{blob.digest}"), 200, 404)
            if response.status_code == 404:
                raise RegistryError(f"{target.host}/{repo}: blob {blob.digest} missing")
            if int(response.headers.get("Content-Length", -1)) != blob.size:
                raise RegistryError(f"{target.host}/{repo}: blob {blob.digest} has another size")
            if check_blob_bytes and fetch_blob(c, repo, blob.digest) != blob.data:
                raise RegistryError(f"{target.host}/{repo}: blob {blob.digest} other bytes")
        if tag is not None:
            tagged = fetch_manifest(c, repo, tag)
            if tagged.digest != image.digest:
                raise RegistryError(f"{target.host}/{repo}:{tag} is {tagged.digest}")


@contextlib.contextmanager
def _client(registry: Registry, client: httpx.Client | None) -> Iterator[httpx.Client]:
    """Use the given client, or open (and close) one for the registry."""
    if client is not None:
        yield client
        return
    with registry.client() as own:
        yield own


def unique_repo(prefix: str = "test") -> str:
    """A repository name no other call in this process returns."""
    return f"{prefix}/r{next(_counter)}-{secrets.token_hex(3)}"
