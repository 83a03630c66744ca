"""Temporary files and directories that never outlive a run, and locks between runs.

- :func:`exclusive` holds an ``flock`` on a lock file beside what it protects (a bundle being
  written, a lock file being updated); a second run either waits or is told "in use". The
  lock file is removed when released (an inode check makes removal safe against a run that
  opened it meanwhile). A killed run's lock file holds no lock: the next run takes it over.
- :func:`scratch_dir` makes a directory (the unpacked copy of a ``.tar.zst``) that is locked
  by ``flock`` while in use and removed at the end; :func:`sweep` removes the ones a killed
  run (SIGKILL, power loss) left, recognisable because nobody holds their lock any more.
- :func:`track` registers a path to remove if the process is ended by SIGTERM or SIGHUP:
  :func:`install_signal_cleanup` makes those signals remove every tracked path, then end the
  process the way the signal would have (exit status 128+N). Worker threads are not waited
  for: their partial output is exactly what is being removed.

The standard library has ``fcntl.flock`` and ``tempfile`` but nothing that ties them to
signals and to leftovers of killed runs; this is that glue, kept small.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from kferry.errors import KferryError

_tracked: dict[str, bool] = {}  # path -> is a directory
_guard = threading.Lock()


class InUse(KferryError):
    """Another kferry run holds the lock."""

    exit_code = 1


def track(path: Path, directory: bool = False) -> None:
    with _guard:
        _tracked[str(path)] = directory


def untrack(path: Path) -> None:
    with _guard:
        _tracked.pop(str(path), None)


def remove_tracked() -> None:
    with _guard:
        items = list(_tracked.items())
        _tracked.clear()
    for path, directory in items:
        with contextlib.suppress(OSError):
            if directory:
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    remove_tracked()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_signal_cleanup() -> None:
    """SIGTERM/SIGHUP remove tracked paths, then end the process as the signal would."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, _on_signal)


@contextlib.contextmanager
def exclusive(lock_path: Path, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold ``lock_path`` (created if needed, removed at the end) for the block."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise KferryError(f"{lock_path}: cannot create lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise InUse(
                f"{what} is in use by another kferry run (lock {lock_path}); wait for it to "
                "finish, or choose another output"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # removed by the run that had it; take the new one
    track(lock_path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        untrack(lock_path)
        os.close(fd)


def _try_lock_dir(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def sweep(parent: Path, prefix: str) -> list[Path]:
    """Remove ``parent/prefix*`` directories nobody holds (left by killed runs)."""
    removed: list[Path] = []
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    except OSError:
        return removed
    for path in candidates:
        with contextlib.suppress(OSError):
            # Just made by another run that has not locked it yet (microseconds): keep it.
            if not any(path.iterdir()) and time.time() - path.stat().st_mtime < 10:
                continue
        fd = _try_lock_dir(path)
        if fd is None:
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def scratch_dir(parent: Path | None, prefix: str) -> Iterator[Path]:
    """A new locked directory under ``parent`` (default: ``TMPDIR``), removed at the end."""
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep(base, prefix)
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    except OSError as exc:
        raise KferryError(
            f"cannot create a temporary directory in {base}: {exc.strerror}; choose another "
            "place with --tmp-dir DIR (or TMPDIR)"
        ) from None
    track(path, directory=True)
    fd = _try_lock_dir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        untrack(path)
        if fd is not None:
            os.close(fd)
