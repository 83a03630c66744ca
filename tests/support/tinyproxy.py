"""Debian's tinyproxy as the connected side's forwarding proxy, on loopback, resolving names
the client cannot.

The only servers a test may reach are on loopback, and kferry (like Go's httpproxy, which
skopeo and containerd use) never sends loopback traffic to a proxy. So a test names its
registry ``registry.proxy.test:PORT`` (``.test`` never resolves, RFC 2606) and only the proxy
knows where that is: tinyproxy runs in a mount namespace of its own (``unshare --mount``, with
``--user --map-root-user`` when not root) where a private ``/etc/hosts`` maps the names to
127.0.0.1. Like a corporate proxy, it resolves names and opens the connections itself; the
client only ever talks to the proxy.

What went through it is read from its log (``LogLevel Connect``: one ``CONNECT`` line per
request, ``Request (file descriptor N): CONNECT host:port HTTP/1.1``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import LiveSet, free_port, launch, stop_popen

BINARY = "tinyproxy"
START_TIMEOUT = 15.0
_LIVE = LiveSet()
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+ \S+ \S+)")


@dataclass(eq=False)
class Tinyproxy:
    port: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def requests(self) -> list[str]:
        """Every request line the proxy received (``CONNECT host:port HTTP/1.1``, ...)."""
        return _REQUEST.findall(self.logs())

    def connects(self) -> list[str]:
        """The ``host:port`` of every CONNECT."""
        return [r.split()[1] for r in self.requests() if r.startswith("CONNECT ")]

    def stop(self) -> None:
        if self.process is not None:
            stop_popen(self.process, timeout=5)
        _LIVE.discard(self)


def start_tinyproxy(directory: Path, names: Mapping[str, str]) -> Tinyproxy:
    """tinyproxy on a free 127.0.0.1 port; ``names`` (host name -> address) is the
    ``/etc/hosts`` it resolves with."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise RuntimeError(f"{BINARY} is not on PATH: run scripts/system-deps")
    directory.mkdir(parents=True, exist_ok=True)
    hosts = directory / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in names.items()))
    port = free_port()
    log_file = directory / "tinyproxy.log"
    config = directory / "tinyproxy.conf"
    # no ConnectPort line: CONNECT to every port (registries listen on random ones)
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 120\nMaxClients 200\nAllow 127.0.0.1\n"
        f'LogLevel Connect\nLogFile "{log_file}"\nDisableViaHeader Yes\n'
    )
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    script = f'mount --bind "{hosts}" /etc/hosts && exec "{binary}" -d -c "{config}"'
    proxy = Tinyproxy(port, log_file)
    proxy.process = launch(
        ["unshare", *userns, "--mount", "sh", "-c", script],
        directory / "unshare.log",
        tied=False,
    )
    _LIVE.add(proxy)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proxy.process.poll() is not None:
            out = (directory / "unshare.log").read_text(errors="replace")
            raise RuntimeError(f"tinyproxy exited with {proxy.process.returncode}:\n{out}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proxy
        except OSError:
            if time.monotonic() > deadline:
                proxy.stop()
                raise RuntimeError(f"tinyproxy did not listen on {port}:\n{proxy.logs()}") from None
            time.sleep(0.02)
