"""Node-side registry mirror configuration: containerd ``hosts.toml`` and CRI-O
``registries.conf``, so that references that cannot be rewritten (compiled-in defaults) or
that users write later are pulled from the private registry all the same."""

from __future__ import annotations

from collections.abc import Iterable

from kferry.name import Reference
from kferry.plan.layout import Destination, PlanError, host_component

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


def _mirror_path(host: str, to: Destination, layout: str) -> str:
    if layout == "flat":
        raise PlanError(
            "--layout flat renames repositories, which registry mirror configuration cannot "
            "express; use keep or drop-host for images that need node mirroring"
        )
    parts = [to.project] if to.project else []
    if layout == "keep":
        parts.append(host_component(host))
    return "/".join(parts)


def source_hosts(images: Iterable[Reference]) -> list[str]:
    hosts = sorted({ref.domain for ref in images})
    return hosts or list(COMMON_REGISTRIES)


def containerd_hosts(
    hosts: Iterable[str], to: Destination, layout: str, ca_path: str | None = None
) -> dict[str, str]:
    """``{"<host>/hosts.toml": text}`` for /etc/containerd/certs.d/."""
    out = {}
    for host in hosts:
        path = _mirror_path(host, to, layout)
        url = f"https://{to.registry}/v2" + (f"/{path}" if path else "")
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


def crio_registries(hosts: Iterable[str], to: Destination, layout: str) -> str:
    """A registries.conf (v2) drop-in mirroring each host to the private registry."""
    blocks = ["# written by kferry mirror-config: pull from the private registry first"]
    for host in hosts:
        path = _mirror_path(host, to, layout)
        location = f"{to.registry}/{path}" if path else to.registry
        blocks.append(
            f'[[registry]]\nprefix = "{host}"\nlocation = "{host}"\n\n'
            f'[[registry.mirror]]\nlocation = "{location}"'
        )
    return "\n\n".join(blocks) + "\n"
