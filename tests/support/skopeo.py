"""skopeo as the independent client: it reads what a registry really serves (digests) and is
the yardstick copier for benchmarks."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass

from tests.support.registry import Registry

SKOPEO = "skopeo"


class SkopeoError(AssertionError):
    pass


def _flags(
    registry: Registry | None, prefix: str = "", creds: tuple[str, str] | None = None
) -> list[str]:
    """Connection flags for one side: ``prefix`` is "" (inspect), "src-" or "dest-" (copy).
    No registry: plain HTTP, anonymous (e.g. a FlakyProxy). ``creds`` replace the
    registry's credentials."""
    if registry is None or not registry.tls:
        # containers/image tries HTTPS first and falls back to HTTP only when not verifying.
        args = [f"--{prefix}tls-verify=false"]
    else:
        args = [f"--{prefix}tls-verify=true", f"--{prefix}cert-dir", str(registry.cert_dir)]
    if creds is None and registry is not None and registry.username is not None:
        creds = (registry.username, registry.password or "")
    if creds is not None:
        args += [f"--{prefix}creds", f"{creds[0]}:{creds[1]}"]
    else:
        args.append(f"--{prefix}no-creds")
    return args


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which(SKOPEO) or SKOPEO
    proc = subprocess.run(
        [binary, *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise SkopeoError(
            f"skopeo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode()}"
        )
    return proc


def _docker_ref(ref: str) -> str:
    return ref if ref.startswith("docker://") else f"docker://{ref}"


def skopeo_inspect_raw(
    ref: str,
    *,
    registry: Registry | None,
    creds: tuple[str, str] | None = None,
    timeout: float = 60,
) -> bytes:
    """``skopeo inspect --raw``: the manifest bytes exactly as served."""
    args = ["inspect", "--raw", *_flags(registry, "", creds), _docker_ref(ref)]
    return _run(args, timeout).stdout


def skopeo_raw_digest(
    ref: str,
    *,
    registry: Registry | None,
    creds: tuple[str, str] | None = None,
    timeout: float = 60,
) -> str:
    """``sha256:...`` of the manifest bytes ``skopeo inspect --raw`` reads for ``ref``."""
    raw = skopeo_inspect_raw(ref, registry=registry, creds=creds, timeout=timeout)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class CopyResult:
    seconds: float
    stdout: str
    stderr: str


def skopeo_copy(
    src: str,
    dst: str,
    *,
    src_registry: Registry | None,
    dst_registry: Registry | None,
    all_images: bool = True,
    preserve_digests: bool = True,
    extra_args: tuple[str, ...] = (),
    timeout: float = 600,
) -> CopyResult:
    """``skopeo copy`` from ``src`` to ``dst`` (``host/repo:tag`` or ``@digest``), by default
    every platform of an index and with digests preserved. Returns the wall time."""
    args = ["--insecure-policy", "copy"]
    if all_images:
        args.append("--all")
    if preserve_digests:
        args.append("--preserve-digests")
    args += _flags(src_registry, "src-") + _flags(dst_registry, "dest-")
    args += [*extra_args, _docker_ref(src), _docker_ref(dst)]
    started = time.perf_counter()
    proc = _run(args, timeout)
    return CopyResult(time.perf_counter() - started, proc.stdout.decode(), proc.stderr.decode())
