"""Run ``python -m kferry`` the way a shell does, without paying for a new interpreter.

Most of the fast subset's time was interpreter start-up and imports (httpx, rich, click,
PyYAML, lightkube with trio, and kferry's own 190 modules), paid again for every ``python -m
kferry`` a test runs. A fork server
pays it once: a helper process imports those libraries and every kferry module, then forks one
child per run. The child gets the run's stdin/stdout/stderr as file descriptors, its
environment, cwd and argv, and runs ``kferry`` as ``python -m`` does, in a process of its own:
real exit codes, real signals, no state shared between runs. Preloading kferry is sound because
no kferry module reads the environment or the filesystem at import time (they do it when
called, in the child, after its environment is set); a test that needs a really new
interpreter runs ``subprocess`` itself.

No library does this for tests (multiprocessing's forkserver runs Python callables, not a
program with its own fds, environment and exit status), hence this module.
``KFERRY_TEST_SUBPROCESS=1`` turns it off (every run is then a new interpreter).
"""

from __future__ import annotations

import array
import atexit
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

PRELOAD = (
    "httpx",
    "httpcore",
    "rich.console",
    "rich.progress",
    "rich.table",
    "click",
    "yaml",
    "lightkube",
    "lightkube.config.kubeconfig",
    "bcrypt",
    "ssl",
    "tarfile",
    "hashlib",
    "json",
)


def _recv(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    size = struct.unpack("!I", _exact(conn, 4))[0]
    fds = array.array("i")
    msg, anc, _, _ = conn.recvmsg(size, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    while len(msg) < size:
        msg += _exact(conn, size - len(msg))
    return json.loads(msg), list(fds)


def _exact(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become ``python -m kferry ARGS`` and never return."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.argv = ["kferry", *request["args"]]
        import runpy

        try:
            runpy.run_module("kferry", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                code = code or 120
    finally:
        os._exit(code)


def serve(path: str) -> None:
    """The fork server: preload, then one child per request, one request at a time."""
    import importlib
    import pkgutil

    import kferry

    for name in PRELOAD:
        importlib.import_module(name)
    for info in pkgutil.walk_packages(kferry.__path__, "kferry."):
        if info.name != "kferry.__main__":
            importlib.import_module(info.name)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    sock.settimeout(1.0)
    parent = os.getppid()
    print("ready", flush=True)
    while True:
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            if os.getppid() != parent:
                return  # the test process is gone (an xdist worker exits without atexit)
            continue
        conn.settimeout(None)
        try:
            request, fds = _recv(conn)
        except (EOFError, OSError, ValueError):
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:
            sock.close()
            conn.close()
            _child(request, fds)
        for fd in fds:
            os.close(fd)
        conn.sendall(struct.pack("!i", pid))
        _, status = os.waitpid(pid, 0)
        conn.sendall(struct.pack("!i", os.waitstatus_to_exitcode(status)))
        conn.close()


class ForkServer:
    """The client side: one server per pytest process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="kferry-fork-")
        self.path = str(Path(self._dir) / "sock")

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from tests.support.forkrun import serve; serve({self.path!r})",
            ],
            cwd=str(Path(__file__).resolve().parents[2]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the test fork server did not start")
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)

    def run(
        self, args: list[str], stdin: bytes, env: dict[str, str], cwd: str, timeout: float
    ) -> tuple[int, bytes, bytes]:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            with (
                tempfile.TemporaryFile() as fin,
                tempfile.TemporaryFile() as fout,
                tempfile.TemporaryFile() as ferr,
            ):
                fin.write(stdin)
                fin.seek(0)
                body = json.dumps({"args": args, "env": env, "cwd": cwd}).encode()
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    conn.connect(self.path)
                    conn.sendall(struct.pack("!I", len(body)))
                    fds = array.array("i", [fin.fileno(), fout.fileno(), ferr.fileno()])
                    conn.sendmsg([body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                    pid = struct.unpack("!i", _exact(conn, 4))[0]
                    conn.settimeout(timeout)
                    try:
                        code = struct.unpack("!i", _exact(conn, 4))[0]
                    except TimeoutError:
                        os.kill(pid, signal.SIGKILL)
                        code = struct.unpack("!i", _exact(conn, 4))[0]
                        raise subprocess.TimeoutExpired(["kferry", *args], timeout) from None
                finally:
                    conn.close()
                fout.seek(0)
                ferr.seek(0)
                return code, fout.read(), ferr.read()


_server: ForkServer | None = None


def run(
    args: list[str], stdin: bytes, env: dict[str, str], cwd: str, timeout: float
) -> tuple[int, bytes, bytes]:
    global _server
    if _server is None:
        _server = ForkServer()
    return _server.run(args, stdin, env, cwd, timeout)
