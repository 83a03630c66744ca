"""The one process launcher and stopper of the tests, and what goes with it: free loopback
ports and the set of live servers stopped at interpreter exit.

- :func:`launch`: a server program in its own session, stdin closed, output appended to its
  log file; ``tied=True`` also asks the kernel to kill it when the starting thread dies
  (``setpriv --pdeathsig KILL``), so a killed pytest leaves nothing behind;
- :func:`stop_popen`: SIGTERM, wait, then SIGKILL;
- :class:`Process`: a named process, a child or one found again by its pid (the cluster's
  ``attach``), with its log; :func:`launch_process` makes one;
- :class:`LiveSet`: what is running, stopped at exit;
- :func:`free_port`, :func:`free_ports`.

Used by the registry harness, the cluster and node harnesses, Dex and oauth2-proxy.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

STOP_TIMEOUT = 10.0


def launch(
    argv: Sequence[str],
    log_file: Path,
    *,
    tied: bool,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, stdin closed, stdout and stderr appended to
    ``log_file``. ``tied``: killed by the kernel when the starting thread dies (``setpriv
    --pdeathsig KILL``, where setpriv exists)."""
    command = list(argv)
    setpriv = shutil.which("setpriv")
    if tied and setpriv is not None:
        command = [setpriv, "--pdeathsig", "KILL", "--", *command]
    with log_file.open("ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def stop_popen(popen: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, up to ``timeout`` s, then SIGKILL (and wait). Nothing if it has exited."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=timeout)


@dataclass(eq=False)
class Process:
    """One server process: a child (``popen``) or one found again by its pid."""

    name: str
    pid: int
    log_file: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rpartition(")")[2].split()[0] != "Z"

    def is_ours(self, directory: Path) -> bool:
        """Still the process we started (the pid was not reused): its command line names
        its binary and our directory."""
        if self.popen is not None:
            return True
        try:
            argv = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        text = b" ".join(argv).decode(errors="replace")
        return Path(argv[0].decode(errors="replace")).name == self.name and str(directory) in text

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.popen is not None:
            stop_popen(self.popen, timeout)
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
            if not self.alive():
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def launch_process(
    name: str,
    binary: Path,
    args: Sequence[str],
    log_file: Path,
    *,
    tied: bool,
    env: Mapping[str, str] | None = None,
) -> Process:
    """:func:`launch` ``binary args`` as the :class:`Process` called ``name``."""
    popen = launch([str(binary), *args], log_file, tied=tied, env=env)
    return Process(name, popen.pid, log_file, popen)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


class LiveSet:
    """What the tests started and have not stopped yet; stopped at interpreter exit, so a
    crashed or interrupted run leaves no server behind. Shared by the harnesses."""

    def __init__(self) -> None:
        self._live: dict[int, _Stoppable] = {}
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def add(self, item: _Stoppable) -> None:
        with self._lock:
            self._live[id(item)] = item

    def discard(self, item: _Stoppable) -> None:
        with self._lock:
            self._live.pop(id(item), None)

    def stop_all(self) -> None:
        with self._lock:
            live = list(self._live.values())
        for item in live:
            item.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


PEERS_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "peers"


def peer_binary(name: str, override_env: str) -> Path:
    """A peer's program: ``$override_env`` if set, else ``scripts/peers NAME`` (built once
    into the peer cache, instant after that; its last line is the folder holding NAME)."""
    override = os.environ.get(override_env)
    if override:
        return Path(override)
    proc = subprocess.run(
        [str(PEERS_SCRIPT), name], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, check=False
    )
    lines = proc.stdout.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{PEERS_SCRIPT} {name} failed with exit code {proc.returncode}")
    return Path(lines[-1]) / name
