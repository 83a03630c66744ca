"""One look, ``--wait`` and ``--watch`` over any snapshot stream, and the exit codes.

Exit codes: 0 all ready (or still deploying, when not waiting), 1 any failed, 2 bad usage
(:class:`~kferry.errors.InputError`), 3 ``--wait`` ended (timeout) while still deploying.
A failure wins over a timeout: a failed service is the more useful news.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kferry.errors import InputError
from kferry.status.classify import DEPLOYING, FAILED, StatusResult, classify
from kferry.status.source import Obj, Selector, select

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STILL_DEPLOYING = 3

EVERY = Selector()  # no NAME, every namespace of the input

Clock = Callable[[], float]
WallClock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def evaluate(
    objects: Iterable[Obj],
    selector: Selector = EVERY,
    *,
    now: datetime | None = None,
    missing_is_pending: bool = False,
) -> list[StatusResult]:
    """Classify the selected objects, in their order.

    A NAME the selector asks for that is not there is an error, or, with
    ``missing_is_pending`` (waiting on the cluster, where it may not be created yet), a
    deploying result.
    """
    when = now if now is not None else _now()
    chosen = select(objects, selector)
    results = [classify(obj, now=when) for obj in chosen]
    if selector.name is not None and not chosen:
        if not missing_is_pending:
            raise InputError(f"no {selector.describe()}")
        results.append(
            StatusResult(
                selector.name,
                selector.namespace or "",
                DEPLOYING,
                "NotFound",
                f"InferenceService {selector.name!r} does not exist (yet)",
            )
        )
    return results


def exit_code(results: Sequence[StatusResult], *, waited: bool = False) -> int:
    if any(r.state == FAILED for r in results):
        return EXIT_FAILED
    if waited and any(r.state == DEPLOYING for r in results):
        return EXIT_STILL_DEPLOYING
    return EXIT_OK


@dataclass(frozen=True, slots=True)
class Outcome:
    """How following ended: the last results, and whether the timeout cut it short."""

    results: list[StatusResult]
    timed_out: bool

    @property
    def deploying(self) -> list[StatusResult]:
        return [r for r in self.results if r.state == DEPLOYING]


def follow(
    snapshots: Iterable[Sequence[Obj]],
    selector: Selector = EVERY,
    *,
    until_settled: bool,
    timeout: float | None,
    on_change: Callable[[list[StatusResult]], None] | None = None,
    clock: Clock = time.monotonic,
    wall: WallClock = _now,
) -> Outcome:
    """Classify each snapshot until nothing is deploying (``until_settled``, for ``--wait``),
    the ``timeout`` (seconds, None = none) has passed, or the stream ends.

    ``on_change`` sees the results of the first snapshot and of every one that differs
    (``--watch``); a raw-mode rollout turning failed at its deadline is a change even when the
    object is not. The timeout is checked after each snapshot.
    """
    start = clock()
    last: list[StatusResult] | None = None
    results: list[StatusResult] = []
    for objects in snapshots:
        results = evaluate(objects, selector, now=wall(), missing_is_pending=True)
        if on_change is not None and results != last:
            on_change(results)
        last = results
        if until_settled and not any(r.state == DEPLOYING for r in results):
            return Outcome(results, timed_out=False)
        if timeout is not None and clock() - start >= timeout:
            return Outcome(results, timed_out=True)
    return Outcome(results, timed_out=False)
