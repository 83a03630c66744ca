"""A registry that has the OCI 1.1 referrers API, on loopback: the peer of the referrers-API
tests (docker-registry 2.8, the other registries' program, has no such API).

It is go-containerregistry v0.22.1's ``pkg/registry`` (the server of ``crane registry
serve``) with ``WithReferrersSupport(true)``, built by ``scripts/peers referrers-registry``
from the small main in ``tests/peers/referrers-registry/`` (see scripts/peers for why not
olareg or zot: the Go module proxy here refuses them). ``GET /v2/<name>/referrers/<digest>``
lists every manifest of the repository whose ``subject`` names the digest. Anonymous, plain
HTTP or TLS (a fresh test CA); manifests in memory, blobs under ``storage``, so
:meth:`Registry.restart` keeps the blobs only. Same :class:`~tests.support.registry.Registry`
as the others (``client``, ``ref``, ``stop``), started with :func:`start_referrers_registry`.
"""

from __future__ import annotations

from pathlib import Path

from tests.support import markers
from tests.support.pki import new_ca
from tests.support.processes import free_port, peer_binary
from tests.support.registry import Registry

NAME = "referrers-registry"


def referrers_registry_binary() -> Path:
    """``KFERRY_REFERRERS_REGISTRY_BIN``, or ``scripts/peers referrers-registry``."""
    return peer_binary(NAME, "KFERRY_REFERRERS_REGISTRY_BIN")


class ReferrersRegistry(Registry):
    """A running referrers-registry (a :class:`Registry` whose program is the peer)."""

    binary: Path
    tls_files: tuple[Path, Path] | None

    def _launch(self) -> None:
        argv = [str(self.binary), "--address", self.host, "--dir", str(self.storage)]
        if self.tls_files is not None:
            argv += ["--tls-cert", str(self.tls_files[0]), "--tls-key", str(self.tls_files[1])]
        self._run(argv)


def start_referrers_registry(tmp_dir: Path, *, tls: bool = False) -> ReferrersRegistry:
    """Start the referrers-API registry on a free 127.0.0.1 port, anonymous; ``tls``: HTTPS
    with a certificate from a fresh CA (``ca_file``)."""
    markers.started(markers.REGISTRY, "a registry with the referrers API")
    binary = referrers_registry_binary()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    storage = tmp_dir / "storage"
    storage.mkdir(exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    ca = new_ca(tmp_dir / "ca") if tls else None
    tls_files = (
        ca.issue_server_cert(tmp_dir / "tls", "registry", hosts=("127.0.0.1", "localhost"))
        if ca is not None
        else None
    )
    registry = ReferrersRegistry(
        host=host,
        url=f"{'https' if tls else 'http'}://{host}",
        port=port,
        tls=tls,
        auth=None,
        username=None,
        password=None,
        ca_file=ca.cert_file if ca is not None else None,
        storage=storage,
        directory=tmp_dir,
        config_file=tmp_dir / "no-config",
        log_file=tmp_dir / "registry.log",
        ca=ca,
    )
    registry.binary = binary
    registry.tls_files = tls_files
    registry._launch()
    return registry
