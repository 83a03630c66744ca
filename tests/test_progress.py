"""What the long commands show while they work, through a real pseudo-terminal and through a pipe.

`kferry mirror`, `bundle save` and `bundle load` run as subprocesses against real registries
(tests/support: docker-registry on loopback, TLS + htpasswd target), with the source behind a
throttling proxy so that the run lasts long enough to be watched. On a terminal (stderr is the
slave side of ``os.openpty``) the transcript is stripped of escape sequences and each drawn row
is checked: the images row has an image count and the current image, the bytes row has bytes,
rate and ETA, and the byte total never changes. Through a pipe: one plain line per image as it
ends (read while the run is still going) and per phase, no escape sequences at all. The end
summary has the right verb, elapsed time and throughput, and for `bundle save` the bundle's
path, size and sha256 (compared with the file's own hash).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.images import PushedImage, push_image
from tests.support.proxy import FlakyProxy, ProxyFactory
from tests.support.registry import Registry

pytestmark = pytest.mark.registry

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]")
SUMMARY_TIME = re.compile(r" in \d+(\.\d+)? s \(\d+\.\d MB/s\)")


@dataclass
class Run:
    code: int
    out: str
    err: str  # as written (escape sequences included)
    lines: list[tuple[float, str]] = field(default_factory=list)  # (arrival, line) in a pipe
    ended: float = 0.0

    @property
    def rows(self) -> list[str]:
        """What a terminal showed: every row drawn, escape sequences removed."""
        text = ANSI.sub("", self.err)
        return [r.strip() for r in re.split(r"[\r\n]", text) if r.strip()]


def kferry_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kferry", *args]


def run_in_pty(argv: list[str], stdin: bytes = b"", cols: int = 200) -> Run:
    """stderr on a pseudo-terminal of ``cols`` columns; stdout a pipe (the summary)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols)}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    transcript = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            transcript.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out, _ = proc.communicate(stdin, timeout=180)
    reader.join(10)
    os.close(master)
    return Run(proc.returncode, out.decode(), transcript.decode(errors="replace"))


def start_piped(argv: list[str], stdin: bytes = b"") -> tuple[subprocess.Popen[bytes], Run]:
    """stderr a pipe read line by line as it comes (arrival times kept)."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    run = Run(0, "", "")

    def read() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            run.err += line
            run.lines.append((time.monotonic(), line.rstrip("\n")))

    threading.Thread(target=read, daemon=True).start()
    return proc, run


def finish(proc: subprocess.Popen[bytes], run: Run, timeout: float = 180) -> Run:
    assert proc.stdout is not None
    run.out = proc.stdout.read().decode()
    run.code = proc.wait(timeout)
    run.ended = time.monotonic()
    time.sleep(0.2)  # the reader thread drains the last lines
    return run


def wait_for_lines(run: Run, pattern: str, count: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for _, line in run.lines if re.search(pattern, line)]
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no {count} lines matching {pattern!r} in:\n{run.err}")


def push_set(source: Registry, n: int, size: int, prefix: str = "progress") -> list[PushedImage]:
    return [push_image(source, f"{prefix}/app{i}", tag="1", layers=[size, 2000]) for i in range(n)]


def slow(make_flaky_proxy: ProxyFactory, source: Registry, bps: int) -> FlakyProxy:
    proxy = make_flaky_proxy(source)
    proxy.bytes_per_second = bps
    return proxy


def mirror_args(
    proxy: FlakyProxy, images: list[PushedImage], target: Registry, lock: Path, *extra: str
) -> tuple[list[str], bytes]:
    args = ["mirror", *(proxy.ref(i.repo, "1") for i in images), "--plain-http", proxy.host]
    args += ["--to", f"{target.host}/proj", "--ca-file", str(target.ca_file)]
    args += ["--username", str(target.username), "--password-stdin", "--lock", str(lock), *extra]
    return kferry_argv(*args), f"{target.password}\n".encode()


def image_rows(rows: list[str]) -> list[str]:
    return [r for r in rows if r.startswith("images ")]


def byte_rows(rows: list[str]) -> list[str]:
    return [r for r in rows if r.startswith("bytes ")]


# -- a terminal ------------------------------------------------------------------------------
def test_mirror_on_a_terminal_draws_two_rows_with_their_own_columns(
    source_registry: Registry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    images = push_set(source_registry, 4, 600_000)
    proxy = slow(make_flaky_proxy, source_registry, 1_000_000)
    argv, stdin = mirror_args(proxy, images, target_registry, tmp_path / "lock.json", "-j", "2")
    run = run_in_pty(argv, stdin)
    assert run.code == 0, run.err + run.out
    rows = run.rows
    imgs, byts = image_rows(rows), byte_rows(rows)
    assert imgs and byts, rows
    for row in imgs:  # images: a count of images, the time so far, the image in flight
        assert re.search(r" [0-4]/4 \d+:\d\d:\d\d", row), row
        assert "MB" not in row.split("copying")[0] and "/s" not in row.split("copying")[0], row
    for row in byts:  # bytes: bytes of a total, a rate, an ETA; never an image count
        assert re.search(r"[\d.]+/(\?|[\d.]+) (MB|kB|bytes) ", row), row
        assert re.search(r"(bytes|[kMG]B)/s|\?", row), row
        assert "/4 " not in row, row
    counts = [int(m.group(1)) for r in imgs if (m := re.search(r" (\d)/4 ", r))]
    assert counts == sorted(counts), f"the image count went back: {counts}"
    current = [r for r in imgs if "copying " in r]
    assert any(f"copying {proxy.host}/progress/app" in r for r in current), imgs
    totals = {m.group(1) for r in byts if (m := re.search(r"/([\d.]+) MB", r))}
    assert len(totals) == 1, f"the byte total changed during the run: {totals}"
    assert not any(re.match(r"\[\d+/4\]", r) for r in rows), "per-image lines on a terminal"
    assert "4 images: 4 copied, 0 already there, 0 failed" in run.out
    assert " sent in " in run.out and SUMMARY_TIME.search(run.out), run.out


def test_bundle_load_knows_its_image_count_from_the_start(
    source_registry: Registry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    images = push_set(source_registry, 3, 400_000, "loadcount")
    bundle = tmp_path / "b.tar"
    refs = [source_registry.ref(i.repo, "1") for i in images]
    save = subprocess.run(
        kferry_argv(
            "bundle", "save", *refs, "--plain-http", source_registry.host, "-o", str(bundle)
        ),
        capture_output=True,
        check=False,
    )
    assert save.returncode == 0, save.stderr
    argv = kferry_argv(
        "bundle", "load", str(bundle), "--to", f"{target_registry.host}/proj",
        "--ca-file", str(target_registry.ca_file), "--username", str(target_registry.username),
        "--password-stdin", "--lock", str(tmp_path / "lock.json"),
    )  # fmt: skip
    run = run_in_pty(argv, f"{target_registry.password}\n".encode())
    assert run.code == 0, run.err + run.out
    imgs = image_rows(run.rows)
    assert imgs, run.rows
    assert all(re.search(r" [0-3]/3 ", r) for r in imgs), imgs  # never 0/?
    assert "3 images: 3 loaded" in run.out and " loaded in " in run.out, run.out


# -- a pipe ----------------------------------------------------------------------------------
def test_mirror_in_a_pipe_prints_one_line_per_image_as_it_ends(
    source_registry: Registry,
    target_registry: Registry,
    make_flaky_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    images = push_set(source_registry, 4, 500_000, "piped")
    proxy = slow(make_flaky_proxy, source_registry, 1_000_000)
    argv, stdin = mirror_args(proxy, images, target_registry, tmp_path / "lock.json", "-j", "1")
    proc, run = start_piped(argv, stdin)
    first = wait_for_lines(run, r"^\[1/4\] copied ", 1)
    assert proc.poll() is None, "the first image's line came only at the end"
    finish(proc, run)
    assert run.code == 0, run.err
    assert first[0].endswith(" MB)") and " -> " in first[0], first
    done = [line for _, line in run.lines if re.match(r"\[\d/4\] copied ", line)]
    assert len(done) == 4 and sorted(line[:5] for line in done) == [
        f"[{k}/4]" for k in (1, 2, 3, 4)
    ]
    for img in images:
        assert any(f"{proxy.host}/{img.repo}:1 -> " in line for line in done), done
    assert re.search(r"^4 images: [\d.]+ MB to move$", run.err, re.M), run.err
    assert "\x1b" not in run.err and "━" not in run.err, "animation in a pipe"
    assert SUMMARY_TIME.search(run.out) and " sent in " in run.out, run.out


def test_bundle_save_says_packing_and_prints_path_size_and_checksum(
    source_registry: Registry, tmp_path: Path
) -> None:
    images = push_set(source_registry, 3, 300_000, "saved")
    bundle = tmp_path / "site.tar.zst"
    refs = [source_registry.ref(i.repo, "1") for i in images]
    argv = kferry_argv("bundle", "save", *refs, "--plain-http", source_registry.host)
    proc, run = start_piped([*argv, "-o", str(bundle)])
    finish(proc, run)
    assert run.code == 0, run.err
    lines = [line for _, line in run.lines]
    saved = [line for line in lines if re.match(r"\[\d/3\] saved ", line)]
    assert len(saved) == 3, lines
    packed = [line for line in lines if line.startswith(f"packing {bundle}: done in ")]
    assert packed and lines.index(packed[0]) > lines.index(saved[-1]), lines
    assert "\x1b" not in run.err
    sha = hashlib.sha256(bundle.read_bytes()).hexdigest()
    size_mb = f"{bundle.stat().st_size / 1e6:.1f} MB"
    assert f"bundle: {bundle} ({size_mb}), sha256 {sha} (in site.tar.zst.sha256)" in run.out
    assert "3 images: 3 saved, 0 already there, 0 failed" in run.out, run.out
    assert " written in " in run.out and SUMMARY_TIME.search(run.out), run.out
    assert " sent " not in run.out


def test_bundle_save_json_summary_carries_time_throughput_and_checksum(
    source_registry: Registry, tmp_path: Path
) -> None:
    import json

    images = push_set(source_registry, 2, 200_000, "savedjson")
    bundle = tmp_path / "site.tar"
    refs = [source_registry.ref(i.repo, "1") for i in images]
    res = subprocess.run(
        kferry_argv("bundle", "save", *refs, "--plain-http", source_registry.host,
                    "-o", str(bundle), "--json"),
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["bundle"]["sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert summary["bundle"]["size"] == bundle.stat().st_size
    assert summary["bundle"]["path"] == str(bundle)
    assert summary["elapsed_seconds"] > 0 and summary["bytes_per_second"] > 0
    assert summary["bytes_sent"] > 400_000
