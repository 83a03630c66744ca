"""What the copy commands show on stderr while they work, and the numbers for their summary.

On a terminal: two rows drawn by rich, each with columns of its own, so that a count of
images never sits beside a byte rate::

    images ━━━━━━━━━━╸━━━━━━━━━  9/21 0:00:12 copying docker.io/istio/proxyv2:1.9.6 (+3)
    bytes  ━━━━━━━━━━━━╸━━━━━━━ 121.3/200.4 MB 10.2 MB/s 0:00:08

plus a spinner row for a phase of its own (``reading bundle``, ``packing``). The byte total
is set once, when every image's manifests have been read
(:meth:`kferry.transfer.copy.Progress.sized`), and shown as ``?`` before, so the ETA does
not jump as images start. In a pipe, a log file or CI (stderr not a terminal): one plain
line per image as it ends and per phase (when it ends, and when it starts too if it
lasts over a second), nothing animated.

rich draws the rows (two ``rich.progress.Progress`` in one ``rich.live.Live``, rich's own
pattern for rows with different columns); what is written here is only which numbers go
where.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

from kferry.cli.output import colour_wanted, printable
from kferry.transfer.copy import ImageResult, Progress


@dataclass(frozen=True)
class Words:
    """How a command names what it does: ``mirror`` copies and sends, ``bundle save`` saves
    and writes, ``bundle load`` loads."""

    done: str  # an image ended well: "copied", "saved", "loaded"
    doing: str  # the image in flight: "copying", "saving", "loading"
    moved: str  # the bytes: "sent", "written", "loaded"


# A phase still running after this many seconds is announced in a pipe (see LineProgress).
PHASE_NOTICE = 1.0

MIRROR = Words("copied", "copying", "sent")
SAVE = Words("saved", "saving", "written")
LOAD = Words("loaded", "loading", "loaded")


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def seconds(s: float) -> str:
    """``4.2 s``, ``3 min 07 s``, ``1 h 02 min``."""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class Meter(Progress):
    """Counts (thread-safe) and the clock; the base of both displays."""

    def __init__(self, words: Words) -> None:
        self.words = words
        self.started = time.monotonic()
        self.images = 0
        self.ended = 0
        self.skipped = 0
        self.total: int | None = None
        self.moved = 0
        self._lock = threading.Lock()
        self._flying: dict[int, ImageResult] = {}  # in the order they started

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def start(self, images: int) -> None:
        with self._lock:
            self.images += images

    def sized(self, total: int) -> None:
        with self._lock:
            self.total = (self.total or 0) + total

    def image_started(self, result: ImageResult, size: int) -> None:
        with self._lock:
            self._flying[id(result)] = result
        self.changed()

    def image_done(self, result: ImageResult) -> None:
        with self._lock:
            self._flying.pop(id(result), None)
            self.ended += 1
            self.skipped += result.status == "skipped"
            n = self.ended
        self.ended_one(result, n)
        self.changed()

    def bytes_done(self, n: int) -> None:
        with self._lock:
            self.moved += n

    def current(self) -> str:
        """The image last started that is still in flight, and how many others are."""
        with self._lock:
            flying = list(self._flying.values())
        if not flying:
            return ""
        more = f" (+{len(flying) - 1})" if len(flying) > 1 else ""
        return f"{self.words.doing} {printable(flying[-1].source.canonical)}{more}"

    def changed(self) -> None: ...

    def ended_one(self, result: ImageResult, n: int) -> None: ...


class LineProgress(Meter):
    """stderr is not a terminal: one line per image as it ends, one per phase."""

    def __init__(self, words: Words) -> None:
        super().__init__(words)
        self._phases: dict[str, tuple[float, str, threading.Timer]] = {}

    def _say(self, line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def sized(self, total: int) -> None:
        super().sized(total)
        with self._lock:
            there = self.skipped
        self._say(
            f"{self.images} images: {mb(total)} to move"
            + (f", {there} already there" if there else "")
        )

    def ended_one(self, result: ImageResult, n: int) -> None:
        width = len(str(self.images))
        head = f"[{n:>{width}}/{self.images}]"
        ref = printable(result.source.canonical)
        if result.status == "copied":
            where = "" if result.target == result.source else f" -> {result.target.canonical}"
            line = f"{head} {self.words.done} {ref}{printable(where)} ({mb(result.bytes_sent)})"
        elif result.status == "skipped":
            line = f"{head} already there: {ref}"
        elif result.status == "interrupted":
            line = f"{head} interrupted: {ref}"
        else:
            line = f"{head} FAILED {ref} (the summary says why)"
        self._say(line)

    def phase(self, name: str, detail: str = "") -> None:
        """The phase's line comes when it ends; one that lasts more than a second is also
        announced then (so a bad bundle is still one line of error, nothing before it)."""
        what = f"{name} {printable(detail)}".rstrip()
        timer = threading.Timer(PHASE_NOTICE, self._say, (f"{what} ...",))
        timer.daemon = True
        self._phases[name] = (time.monotonic(), what, timer)
        timer.start()

    def close(self) -> None:
        """No announcement after the command is over (a phase that ended in an error)."""
        for _, _, timer in self._phases.values():
            timer.cancel()

    def notice(self, message: str) -> None:
        self._say(message)

    def phase_done(self, name: str, detail: str = "") -> None:
        began, what, timer = self._phases.pop(name, (time.monotonic(), name, None))
        if timer is not None:
            timer.cancel()
        more = f" ({printable(detail)})" if detail else ""
        self._say(f"{what}: done in {seconds(time.monotonic() - began)}{more}")


class BarProgress(Meter):
    """stderr is a terminal: an images row, a bytes row, a phase row (see the module)."""

    def __init__(self, words: Words, console: Console | None = None) -> None:
        super().__init__(words)
        self.console = console or Console(stderr=True, no_color=not colour_wanted())
        self.image_bars = RichProgress(
            TextColumn("images"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}"),
            console=self.console,
        )
        self.byte_bars = RichProgress(
            TextColumn("bytes "),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.phase_bars = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        # hidden until the copier says how many images (preflight and reading a bundle come
        # first): a row never shows a count it does not know
        self.images_task: TaskID = self.image_bars.add_task(
            "images", total=None, current="", visible=False
        )
        self.bytes_task: TaskID = self.byte_bars.add_task("bytes", total=None, visible=False)
        self._bar_phases: dict[str, TaskID] = {}
        self._draw = threading.Lock()
        self.live = Live(
            Group(self.phase_bars, self.image_bars, self.byte_bars),
            console=self.console,
            transient=True,
            refresh_per_second=8,
        )

    def __enter__(self) -> BarProgress:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def start(self, images: int) -> None:
        super().start(images)
        self.image_bars.update(self.images_task, total=self.images, visible=True)
        self.byte_bars.update(self.bytes_task, visible=True)

    def sized(self, total: int) -> None:
        super().sized(total)
        self.byte_bars.update(self.bytes_task, total=self.total)

    def bytes_done(self, n: int) -> None:
        super().bytes_done(n)
        self.byte_bars.advance(self.bytes_task, n)

    def changed(self) -> None:
        # read and drawn under one lock: a worker that read the counts before another one
        # finished an image must not draw its older counts after it
        with self._draw:
            self.image_bars.update(self.images_task, completed=self.ended, current=self.current())

    def notice(self, message: str) -> None:
        self.console.print(message, highlight=False)  # above the bars (Live)

    def phase(self, name: str, detail: str = "") -> None:
        self._bar_phases[name] = self.phase_bars.add_task(f"{name} {printable(detail)}".rstrip())

    def phase_done(self, name: str, detail: str = "") -> None:
        task = self._bar_phases.pop(name, None)
        if task is not None:
            self.phase_bars.remove_task(task)
