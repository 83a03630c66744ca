"""`kferry mirror-config` output read by real readers of each format, pulling from a loopback
registry that plays the private side:

- CRI-O's ``registries.conf``: skopeo (containers/image, the library CRI-O pulls with)
  reads the drop-in with ``--registries-conf`` and fetches a ``gcr.io/...`` reference from
  the mirror, plain HTTP (``--plain-http``: ``insecure = true``) and TLS (the CA given to
  skopeo as an admin installs it);
- containerd's ``hosts.toml``: ``ctr images pull --hosts-dir`` (containerd 1.6's own
  resolver, the code the CRI plugin uses with ``config_path``), plain HTTP.

The node tests (tests/test_node_pulls.py) read hosts.toml through kubelet and the CRI plugin.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_kferry
from tests.support.registry import Registry, RegistryFactory
from tests.support.runnable import push_runnable

pytestmark = pytest.mark.registry


def _mirror(registry: Registry, source_repo: str) -> tuple[str, object]:
    """Push a runnable image where `--layout keep --to HOST/mirror` puts gcr.io/REPO."""
    image = push_runnable(registry, f"mirror/gcr.io/{source_repo}", tag="v1")
    return f"gcr.io/{source_repo}:v1", image


def test_crio_registries_conf_read_by_skopeo_plain_http(
    source_registry: Registry, tmp_path: Path
) -> None:
    ref, image = _mirror(source_registry, "kubeflow-images-public/notebook-controller")
    res = run_kferry(
        "mirror-config", ref, "--to", f"{source_registry.host}/mirror", "--format", "crio",
        "--plain-http", source_registry.host, "-o", str(tmp_path / "conf"),
    )  # fmt: skip
    assert res.code == 0, res.err
    conf = tmp_path / "conf" / "kferry-mirrors.conf"
    assert "insecure = true" in conf.read_text()
    proc = subprocess.run(
        ["skopeo", "--registries-conf", str(conf), "inspect", "--raw", f"docker://{ref}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == image.manifest  # type: ignore[attr-defined]
    # Without the drop-in skopeo would go to gcr.io itself: the mirror is what answered.
    log = source_registry.logs()
    assert "/v2/mirror/gcr.io/kubeflow-images-public/notebook-controller/manifests/v1" in log


def test_crio_registries_conf_read_by_skopeo_tls(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    registry = registry_factory(tls=True, auth=None, name="private")
    ref, image = _mirror(registry, "ml-pipeline/frontend")
    res = run_kferry(
        "mirror-config", ref, "--to", f"{registry.host}/mirror", "--format", "crio",
        "-o", str(tmp_path / "conf"),
    )  # fmt: skip
    assert res.code == 0, res.err
    conf = tmp_path / "conf" / "kferry-mirrors.conf"
    assert "insecure" not in conf.read_text()
    certs = tmp_path / "certs.d" / registry.host
    certs.mkdir(parents=True)
    assert registry.ca_file is not None
    shutil.copy(registry.ca_file, certs / "ca.crt")
    base = ["skopeo", "--registries-conf", str(conf), "inspect", "--raw"]
    proc = subprocess.run(
        [*base, "--cert-dir", str(certs), f"docker://{ref}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == image.manifest  # type: ignore[attr-defined]


@pytest.mark.skipif(shutil.which("ctr") is None, reason="containerd: scripts/system-deps")
def test_containerd_hosts_toml_read_by_containerd_resolver(
    source_registry: Registry, tmp_path: Path
) -> None:
    """`ctr images pull --hosts-dir` only resolves and fetches through a daemon; the
    `ctr content fetch` path needs one too, so this reads hosts.toml with `ctr` against a
    throwaway containerd (own root, state and socket)."""
    ref, image = _mirror(source_registry, "arrikto/kubeflow/oidc-authservice")
    hosts = tmp_path / "certs.d"
    res = run_kferry(
        "mirror-config", ref, "--to", f"{source_registry.host}/mirror",
        "--plain-http", source_registry.host, "-o", str(hosts),
    )  # fmt: skip
    assert res.code == 0, res.err
    assert 'host."http://' in (hosts / "gcr.io" / "hosts.toml").read_text()
    socket = tmp_path / "c.sock"
    config = tmp_path / "containerd.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{tmp_path / "root"}"\nstate = "{tmp_path / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n'
        '[metrics]\n  address = ""\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{tmp_path / "opt"}"\n'
    )
    daemon = subprocess.Popen(
        ["containerd", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "containerd.log").open("wb"),
    )
    try:
        for _ in range(100):
            ok = subprocess.run(
                ["ctr", "--address", str(socket), "version"], capture_output=True, check=False
            )
            if ok.returncode == 0:
                break
            subprocess.run(["sleep", "0.1"], check=False)
        proc = subprocess.run(
            ["ctr", "--address", str(socket), "content", "fetch", "--hosts-dir", str(hosts), ref],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        listed = subprocess.run(
            ["ctr", "--address", str(socket), "images", "ls", "-q"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert ref in listed.stdout.split()
        log = source_registry.logs()
        assert "/v2/mirror/gcr.io/arrikto/kubeflow/oidc-authservice/manifests/v1" in log
        del image
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            point = line.split()[4]
            if point.startswith(str(tmp_path)):
                subprocess.run(["umount", "-l", point], check=False)


def test_credentials_are_said_not_written(tmp_path: Path) -> None:
    to = "harbor.local:8080/library"
    res = run_kferry(
        "mirror-config", "gcr.io/ml-pipeline/frontend:2.0.0", "--to", to,
        "--plain-http", "harbor.local:8080", "--username", "robot$kf", "-o", str(tmp_path),
    )  # fmt: skip
    assert res.code == 0, res.err
    assert 'registry.configs."harbor.local:8080".auth' in res.err
    assert 'username = "robot$kf"' in res.err
    written = (tmp_path / "gcr.io" / "hosts.toml").read_text()
    assert "robot" not in written and 'host."http://harbor.local:8080/v2/library/gcr.io"' in written
    res = run_kferry("mirror-config", "gcr.io/a:1", "--to", to, "--format", "crio",
                     "--username", "robot")  # fmt: skip
    assert "global_auth_file" in res.err and "insecure" not in res.out
    res = run_kferry("mirror-config", "gcr.io/a:1", "--to", to, "--plain-http", "other:5000")
    assert res.code == 2 and "--plain-http other:5000" in res.err
