"""Decompression and size bombs, inputs of the wrong shape (issue 10, items 7 and 10).

Memory is measured as the peak RSS of the kferry subprocess (``ru_maxrss`` of the waited
child), so each run is its own process.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest
import zstandard

from kferry.load.source import MAX_INPUT_BYTES
from tests.conftest import Result, run_kferry

RSS_LIMIT_MB = 400


def run_measured(*args: str, timeout: float = 300) -> tuple[Result, float]:
    """Run kferry; return its result and its peak RSS in MB."""
    code = (
        "import resource, subprocess, sys;"
        "p = subprocess.run(sys.argv[1:], capture_output=True);"
        "sys.stdout.buffer.write(p.stdout); sys.stderr.buffer.write(p.stderr);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
        "sys.exit(p.returncode)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, sys.executable, "-m", "kferry", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    err = proc.stderr.decode()
    *lines, rss = err.rstrip("\n").split("\n")
    return Result(proc.returncode, proc.stdout.decode(), "\n".join(lines)), int(rss) / 1024


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.slow
def test_verify_of_a_zst_expanding_to_thousands_of_json_blobs_stays_small(
    tmp_path: Path,
) -> None:
    """120 JSON-looking blobs of 4 MiB (480 MB expanded, more than RSS_LIMIT_MB if they were
    held) from a file of a few hundred KB."""
    out = tmp_path / "bomb.tar.zst"
    index = {"schemaVersion": 2, "manifests": []}
    with open(out, "wb") as raw:
        cctx = zstandard.ZstdCompressor(level=1)
        with (
            cctx.stream_writer(raw) as stream,
            tarfile.open(fileobj=stream, mode="w|") as tar,
        ):
            _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
            _add(tar, "index.json", json.dumps(index).encode())
            for i in range(120):
                data = b"{" + i.to_bytes(4, "big") + b" " * ((4 << 20) - 6) + b"}"
                hexname = __import__("hashlib").sha256(data).hexdigest()
                _add(tar, f"blobs/sha256/{hexname}", data)
    assert out.stat().st_size < 2_000_000
    res, rss = run_measured("bundle", "verify", str(out), "-o", "json")
    assert res.code == 0, res.out + res.err
    assert json.loads(res.out)["blobs"] == 120
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss:.0f} MB"


def _gzip_bomb(path: Path, total: int) -> None:
    line = b"key: value\n"
    piece = line * ((1 << 20) // len(line))
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)  # the fastest level is small enough
    with open(path, "wb") as f:
        written = 0
        while written < total:
            f.write(comp.compress(piece))
            written += len(piece)
        f.write(comp.flush())


@pytest.mark.slow
def test_gzip_bomb_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "render.yaml.gz"
    _gzip_bomb(bomb, MAX_INPUT_BYTES + (128 << 20))  # just over the limit, 640 MiB
    assert bomb.stat().st_size < 5_000_000
    res, rss = run_measured("images", str(bomb))
    assert res.code == 2, res.out + res.err
    assert str(bomb) in res.err and "MiB" in res.err and "Traceback" not in res.err
    assert rss < RSS_LIMIT_MB * 2, f"peak RSS {rss:.0f} MB"


@pytest.mark.parametrize("command", [["images"], ["rewrite", "--to", "r.local/p"]])
def test_dev_zero_as_input_is_refused_at_once(command: list[str]) -> None:
    res, rss = run_measured(*command, "/dev/zero", timeout=60)
    assert res.code == 2, res.out + res.err
    assert "/dev/zero: binary data" in res.err
    assert rss < RSS_LIMIT_MB


def test_image_list_from_dev_zero_is_refused(tmp_path: Path) -> None:
    res = run_kferry("plan", "-f", "/dev/zero", "--to", "r.local/p", timeout=60)
    assert res.code == 2 and "binary data" in res.err


@pytest.mark.parametrize(
    "index",
    [
        b"[]",
        b'"text"',
        b'{"manifests": {"a": 1}}',
        b'{"manifests": ["x"]}',
        b'{"manifests": [{"mediaType": "m", "digest": "sha256:ab", "size": 1}]}',
        b'{"manifests": [{"mediaType": "m", "digest": "sha256:' + b"a" * 64 + b'", "size": []}]}',
        b'{"manifests": [{"annotations": [1], "digest": "x"}]}',
        b"[" * 100_000,
    ],
)
@pytest.mark.parametrize("kind", ["dir", "tar"])
def test_index_json_of_the_wrong_shape_is_one_line(tmp_path: Path, index: bytes, kind: str) -> None:
    layout = tmp_path / "bundle"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_bytes(index)
    target = layout
    if kind == "tar":
        target = tmp_path / "bundle.tar"
        with tarfile.open(target, "w") as tar:
            tar.add(layout / "oci-layout", "oci-layout")
            tar.add(layout / "index.json", "index.json")
    for args in (
        ["bundle", "verify", str(target)],
        ["bundle", "load", str(target), "--to", "127.0.0.1:9/p", "--lock", str(tmp_path / "l")],
    ):
        res = run_kferry(*args, timeout=60)
        assert res.code == 2, (args, res.out, res.err)
        assert "index.json" in res.err and "Traceback" not in res.err
        assert len(res.err.strip().splitlines()) == 1


def test_a_file_that_is_no_bundle_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    res = run_kferry("bundle", "verify", str(f), timeout=60)
    assert res.code == 2 and "not a bundle" in res.err and "Traceback" not in res.err


def test_lock_target_that_is_a_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "lockdir").mkdir()
    res = run_kferry(
        "mirror", "busybox:1", "--to", "127.0.0.1:9/p", "--lock", str(tmp_path / "lockdir"),
        timeout=60,
    )  # fmt: skip
    assert res.code == 2, res.out + res.err
    assert "lockdir" in res.err and "Traceback" not in res.err


def test_resource_module_measures_children() -> None:
    # The measurement above depends on this: ru_maxrss of children is in KB on Linux.
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss >= 0
    assert os.name == "posix"
