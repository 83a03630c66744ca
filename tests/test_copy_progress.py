"""The copier's progress reports and its cancel, in process between OCI layouts (no server).

What the displays of tests/test_progress.py are drawn from: the image count first, the byte
total told once (and equal to what moves), each image ended once. And a
SIGINT delivered to the main thread mid-run (as Ctrl-C is): the run returns at once with the
images that completed as such, the others ``interrupted``, and the sink holding exactly the
completed ones.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from kferry import interrupt
from kferry.name import parse
from kferry.plan import Planned
from kferry.transfer.copy import Copier, ImageResult, Progress
from kferry.transfer.layout.read import LayoutReader
from kferry.transfer.layout.write import LayoutWriter
from tests.support import ocilayout


class Recorder(Progress):
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def _add(self, kind: str, value: object) -> None:
        with self.lock:
            self.events.append((kind, value))

    def numbers(self, kind: str) -> list[int]:
        return [v for k, v in self.events if k == kind and isinstance(v, int)]

    def names(self) -> list[str]:
        return [v for k, v in self.events if k == "done" and isinstance(v, str)]

    def start(self, images: int) -> None:
        self._add("start", images)

    def sized(self, total: int) -> None:
        self._add("sized", total)

    def image_started(self, result: ImageResult, size: int) -> None:
        self._add("started", size)

    def image_done(self, result: ImageResult) -> None:
        self._add("done", result.source.canonical)

    def bytes_done(self, n: int) -> None:
        self._add("bytes", n)


def layout(root: Path, count: int, size: int = 50_000) -> list[str]:
    shared = b"base layer " * 2000
    named = {
        f"docker.io/kf/app{i}:1": ocilayout.image(root, [shared, bytes([i]) * size])
        for i in range(count)
    }
    ocilayout.finish(root, named)
    return list(named)


def planned(refs: list[str]) -> list[Planned]:
    return [Planned(parse(r), parse(r)) for r in refs]


def test_count_first_one_byte_total_and_every_byte_counted(tmp_path: Path) -> None:
    refs = layout(tmp_path / "src", 4)
    rec = Recorder()
    with LayoutReader(tmp_path / "src") as reader, LayoutWriter(tmp_path / "out") as writer:
        results = Copier(reader, writer, jobs=2, progress=rec).run(planned(refs))
        writer.finish()
    assert all(r.status == "copied" for r in results)
    kinds = [k for k, _ in rec.events]
    assert rec.events[0] == ("start", 4)
    assert kinds.count("sized") == 1  # the byte total is told once, and it is the truth
    (total,) = rec.numbers("sized")
    assert total == sum(rec.numbers("started")) == sum(rec.numbers("bytes")) > 0
    assert sorted(rec.names()) == sorted(refs)

    rerun = Recorder()  # all there: nothing to move, each image still ended once
    with LayoutReader(tmp_path / "src") as reader, LayoutWriter(tmp_path / "out") as writer:
        again = Copier(reader, writer, jobs=2, progress=rerun).run(planned(refs))
    assert all(r.status == "skipped" for r in again)
    assert ("sized", 0) in rerun.events
    assert sorted(rerun.names()) == sorted(refs)


class InterruptAfter(Recorder):
    """Sends SIGINT to the main thread (where Python raises KeyboardInterrupt, as for a
    Ctrl-C) when the first image has ended."""

    def image_done(self, result: ImageResult) -> None:
        super().image_done(result)
        if sum(1 for k, _ in self.events if k == "done") == 1:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


@pytest.fixture
def restore_sigint():
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


def test_sigint_returns_completed_and_interrupted_images(
    tmp_path: Path, restore_sigint: None
) -> None:
    refs = layout(tmp_path / "src", 6)
    rec = InterruptAfter()
    out = tmp_path / "out"
    with LayoutReader(tmp_path / "src") as reader, LayoutWriter(out) as writer:
        results = Copier(reader, writer, jobs=1, progress=rec).run(planned(refs))
        complete = {r.source.canonical for r in results if r.done}
        assert {writer.manifest_digest(parse(r)) is not None for r in refs} == {True, False}
        held = {r for r in refs if writer.manifest_digest(parse(r)) is not None}
    statuses = {r.status for r in results}
    assert statuses == {"copied", "interrupted"}, statuses
    assert 1 <= len(complete) < 6
    assert held == complete
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # 2nd: exit now
    assert not interrupt.abandoned()
