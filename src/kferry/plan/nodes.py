"""Node-side registry mirror configuration: containerd ``hosts.toml`` and CRI-O
``registries.conf``, so that references that cannot be rewritten (compiled-in defaults) or
that users write later are pulled from the private registry all the same."""

from __future__ import annotations

from collections.abc import Iterable

from kferry.name import Reference
from kferry.plan.layout import Layout, PlanError, Target, host_component

# Hosts Kubeflow pulls from, for configuration without an image list.
COMMON_REGISTRIES = (
    "docker.io",
    "gcr.io",
    "ghcr.io",
    "quay.io",
    "registry.k8s.io",
    "nvcr.io",
    "public.ecr.aws",
    "mcr.microsoft.com",
)
_SERVERS = {"docker.io": "https://registry-1.docker.io"}


def _mirror_path(host: str, to: Target) -> str:
    if to.layout is Layout.FLAT:
        raise PlanError(
            "--layout flat renames repositories, which registry mirror configuration cannot "
            "express; use keep or drop-host for images that need node mirroring"
        )
    parts = [to.project] if to.project else []
    if to.layout is Layout.KEEP:
        parts.append(host_component(host))
    return "/".join(parts)


def source_hosts(images: Iterable[Reference]) -> list[str]:
    hosts = sorted({ref.domain for ref in images})
    return hosts or list(COMMON_REGISTRIES)


def containerd_hosts(
    hosts: Iterable[str],
    to: Target,
    ca_path: str | None = None,
    *,
    plain_http: bool = False,
) -> dict[str, str]:
    """``{"<host>/hosts.toml": text}`` for /etc/containerd/certs.d/. ``plain_http``: the
    private registry speaks plain HTTP (an ``http://`` host URL, which containerd uses as
    given)."""
    out = {}
    scheme = "http" if plain_http else "https"
    for host in hosts:
        path = _mirror_path(host, to)
        url = f"{scheme}://{to.registry}/v2" + (f"/{path}" if path else "")
        lines = [
            "# written by kferry mirror-config: pull from the private registry first",
            f'server = "{_SERVERS.get(host, "https://" + host)}"',
            "",
            f'[host."{url}"]',
            '  capabilities = ["pull", "resolve"]',
            "  override_path = true",
        ]
        if ca_path:
            lines.append(f'  ca = "{ca_path}"')
        out[f"{host}/hosts.toml"] = "\n".join(lines) + "\n"
    return out


def crio_registries(hosts: Iterable[str], to: Target, *, plain_http: bool = False) -> str:
    """A registries.conf (v2) drop-in mirroring each host to the private registry.
    ``plain_http``: the mirror is marked ``insecure = true`` (containers/image then speaks
    plain HTTP to it, and skips TLS verification)."""
    blocks = ["# written by kferry mirror-config: pull from the private registry first"]
    for host in hosts:
        path = _mirror_path(host, to)
        location = f"{to.registry}/{path}" if path else to.registry
        mirror = f'[[registry.mirror]]\nlocation = "{location}"'
        if plain_http:
            mirror += "\ninsecure = true"
        blocks.append(f'[[registry]]\nprefix = "{host}"\nlocation = "{host}"\n\n{mirror}')
    return "\n\n".join(blocks) + "\n"


def credential_note(fmt: str, registry: str, username: str) -> str:
    """What a node needs for a registry that asks for credentials, which neither hosts.toml
    nor registries.conf can carry. containerd 1.6/1.7 (CRI plugin): kubelet passes a pod's
    pull secret only for the host the reference names (a mirrored ``docker.io/...`` reference
    gets none for the mirror), so the mirror's credentials go in the CRI plugin's
    ``registry.configs."HOST".auth`` table, used when kubelet passes none
    (containerd/containerd@v1.6.20 pkg/cri/server/image_pull.go:339-348, checked on a real
    containerd 1.6 node: tests/test_node_pulls.py). CRI-O: containers/image looks the
    mirror's host up in the global auth file (crio.conf ``[crio.image] global_auth_file``).
    No password is written here."""
    if fmt == "containerd":
        return (
            f"{registry} needs credentials, which hosts.toml cannot hold: on every node add to "
            f"/etc/containerd/config.toml\n"
            f'  [plugins."io.containerd.grpc.v1.cri".registry.configs."{registry}".auth]\n'
            f'    username = "{username}"\n'
            f'    password = "<the password of {username}>"\n'
            f"and restart containerd (pods whose references name {registry} can use an image "
            f"pull secret instead: kferry rewrite --fix pull-secret=NAME)"
        )
    return (
        f"{registry} needs credentials, which registries.conf cannot hold: on every node log "
        f"in to {registry} as {username} into the file crio.conf names as "
        f"[crio.image] global_auth_file (for example: podman login --authfile "
        f"/etc/crio/auth.json {registry}) and restart CRI-O"
    )
