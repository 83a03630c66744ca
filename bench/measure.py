"""Running a child process and measuring its wall time and peak RSS (shared by the benches).

Peak RSS is read from ``VmHWM`` in ``/proc/PID/status`` while the child runs: it belongs to
the child's own address space, created at exec. (``ru_maxrss`` from ``wait4`` would also count
the pages the child shared with this, much larger, benchmark process between fork and exec.)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass


@dataclass
class Measured:
    wall: float
    peak_rss_mib: float
    out: str
    err: str


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_child(cmd: list[str], stdin: bytes | None = None, check: bool = True) -> Measured:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err)
        peak = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _hwm_kib(proc.pid))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert proc.stdin is not None
        proc.stdin.write(stdin or b"")
        proc.stdin.close()
        proc.wait()
        wall = time.perf_counter() - start
        done.set()
        watcher.join()
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(), err.read().decode()
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:5])} failed ({proc.returncode}):\n{o[-2000:]}\n{e[-2000:]}")
    return Measured(wall, peak / 1024, o, e)
