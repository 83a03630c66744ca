"""Writing files so that nothing is ever half-written: temp file, fsync, rename.

The new file gets the mode the user expects: an existing file keeps its mode, a new one gets
``0666 & ~umask`` (``mkstemp`` alone would make every output 0600). A symlink stays a symlink:
the file it points at is replaced. The temporary file is removed on SIGTERM (see
:mod:`kferry.scratch`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kferry import scratch

_umask: int | None = None
_umask_lock = threading.Lock()


def _current_umask() -> int:
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = os.umask(0o022)
            os.umask(_umask)
        return _umask


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_current_umask()


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path``; readers see the old file or the new one, whole."""
    with atomic_file(path, mode=mode) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(
    path: Path, prefix: str | None = None, mode: int | None = None
) -> Iterator[BinaryIO]:
    """A file to write that replaces ``path`` whole when the block ends without an error
    (removed otherwise). ``prefix`` names the temporary file (default ``.NAME.``); ``mode``
    replaces the user's (for secrets: 0600 whatever the umask or the old file's mode)."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path) if mode is None else mode
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{path.name}.", dir=path.parent)
    scratch.track(Path(tmp))
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        scratch.untrack(Path(tmp))
