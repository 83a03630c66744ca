"""Running a child process and measuring its wall time and peak RSS (shared by the benches).

Peak RSS is read from ``VmHWM`` in ``/proc/PID/status`` while the child runs: it belongs to
the child's own address space, created at exec. (``ru_maxrss`` from ``wait4`` would also count
the pages the child shared with this, much larger, benchmark process between fork and exec.)
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RENDER = ROOT / "examples" / "kubeflow" / "kubeflow-26.03.yaml.gz"

# The peer of the render benches: PyYAML's libyaml loader on all documents, timed inside its
# own process (so without interpreter start); prints seconds.
_LIBYAML_LOAD = """
import sys, time, yaml
data = open(sys.argv[1], "rb").read()
t = time.perf_counter()
docs = list(yaml.load_all(data, Loader=yaml.CSafeLoader))
print(time.perf_counter() - t)
"""


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


def plain_render(src: Path, tmp: Path) -> Path:
    """Write ``src`` (gzip or plain YAML) uncompressed into ``tmp`` and return that path."""
    plain = tmp / "render.yaml"
    data = src.read_bytes()
    plain.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return plain


def libyaml_load(plain: Path) -> tuple[float, float]:
    """The peer: (seconds CSafeLoader takes to load every document, peak RSS MiB)."""
    m = run_child([sys.executable, "-c", _LIBYAML_LOAD, str(plain)])
    return float(m.out), m.peak_rss_mib
