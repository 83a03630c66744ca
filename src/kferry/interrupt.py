"""Ctrl-C during a copy: the first one stops the run in order, a second one ends it at once.

The first SIGINT is Python's own: a ``KeyboardInterrupt`` in the main thread, which the copier
(:mod:`kferry.transfer.copy`) turns into a cancel of its workers, after which the command
records what completed and says how to resume. From then on :func:`hard_exit_on_next` makes
the next SIGINT remove the temporary files of the run (:func:`kferry.scratch.remove_tracked`)
and end the process with status 130 without waiting for anything.

Workers that are still inside a request when the copier gives up on them are *abandoned*
(:func:`abandon_workers`): the interpreter would otherwise wait for them at exit (thread pools
join their threads), so :func:`kferry.cli.main.main` ends such a process with ``os._exit``
once its output is flushed. The standard library has the pieces (``signal``, ``os._exit``) but
no policy for a second interrupt; this module is that policy, kept small.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
from types import FrameType

from kferry import scratch

EXIT_INTERRUPTED = 130

_abandoned = threading.Event()
_command: list[str] = []


def set_command(args: list[str]) -> None:
    """The arguments kferry was started with (for :func:`resume_command`)."""
    _command[:] = args


def resume_command() -> str:
    """The command line to run again to resume (passwords are never on it: they come from
    stdin, a prompt or a credentials file)."""
    return shlex.join(["kferry", *_command])


def _exit_now(signum: int, frame: FrameType | None) -> None:
    with contextlib.suppress(OSError):
        os.write(2, b"\nkferry: interrupted again: stopping now\n")
    scratch.remove_tracked()
    os._exit(EXIT_INTERRUPTED)


def hard_exit_on_next() -> None:
    """From now on, SIGINT ends the process at once (status 130). Main thread only (that is
    where Python runs signal handlers); elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, _exit_now)


def abandon_workers() -> None:
    """Say that worker threads were left inside requests: the process must not wait for them
    when it ends (see :func:`end_if_abandoned`)."""
    _abandoned.set()


def abandoned() -> bool:
    """Whether a cancel gave up on workers still inside a request."""
    return _abandoned.is_set()


def end_if_abandoned(code: int) -> None:
    """When workers were abandoned, flush the output and end the process now with ``code``
    (the interpreter would wait for those threads at exit)."""
    if not _abandoned.is_set():
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
