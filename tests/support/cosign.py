"""The real cosign (sigstore/cosign v2, built from its Go module by ``scripts/peers cosign``),
run against the loopback registries: keys, signatures, attestations, verification.

Nothing leaves the machine: signing uses a key pair made here with ``--tlog-upload=false`` and
verification ``--insecure-ignore-tlog`` (no Rekor, no Fulcio, no TUF). cosign reads
credentials from ``DOCKER_CONFIG`` and trusts the test CA through ``--registry-cacert``; the
plain HTTP source needs ``--allow-http-registry``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import peer_binary
from tests.support.registry import Registry, write_docker_config

PASSWORD = "cosign-test-key-pw"
TIMEOUT = 120


class CosignError(RuntimeError):
    pass


def cosign_binary() -> Path:
    """``KFERRY_COSIGN_BIN``, or ``scripts/peers cosign`` (built on first use, then cached)."""
    return peer_binary("cosign", "KFERRY_COSIGN_BIN")


@dataclass
class Cosign:
    binary: Path
    home: Path
    registries: list[Registry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        write_docker_config(self.home / "docker", *self.registries)
        self.key = self.home / "cosign.key"
        self.pub = self.home / "cosign.pub"
        if not self.key.exists():
            self.run("generate-key-pair", "--output-key-prefix", str(self.home / "cosign"))

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "DOCKER_CONFIG": str(self.home / "docker"),
            "TUF_ROOT": str(self.home / "tuf"),
            "COSIGN_PASSWORD": PASSWORD,
            "COSIGN_EXPERIMENTAL": "1",
        }

    def _registry_flags(self, ref: str) -> list[str]:
        for r in self.registries:
            if ref.startswith(r.host + "/"):
                if r.ca_file is not None:
                    return ["--registry-cacert", str(r.ca_file)]
                return ["--allow-http-registry"]
        return []

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.binary), *args],
            env=self.env(),
            cwd=self.home,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=TIMEOUT,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CosignError(f"cosign {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
        return proc

    def sign(self, ref: str, *, oci11: bool = False) -> None:
        mode = ["--registry-referrers-mode=oci-1-1"] if oci11 else []
        self.run(
            "sign", "--key", str(self.key), "--tlog-upload=false", "-y",
            *mode, *self._registry_flags(ref), ref,
        )  # fmt: skip

    def attest(self, ref: str, predicate: Path, kind: str = "custom") -> None:
        self.run(
            "attest", "--key", str(self.key), "--tlog-upload=false", "-y",
            "--type", kind, "--predicate", str(predicate), *self._registry_flags(ref), ref,
        )  # fmt: skip

    def verify(self, ref: str, *, oci11: bool = False) -> subprocess.CompletedProcess[str]:
        mode = ["--experimental-oci11"] if oci11 else []
        return self.run(
            "verify", "--key", str(self.pub), "--insecure-ignore-tlog=true",
            *mode, *self._registry_flags(ref), ref, check=False,
        )  # fmt: skip

    def verify_attestation(
        self, ref: str, kind: str = "custom"
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "verify-attestation", "--key", str(self.pub), "--insecure-ignore-tlog=true",
            "--type", kind, *self._registry_flags(ref), ref, check=False,
        )  # fmt: skip
