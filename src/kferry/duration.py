"""Durations on the command line: one grammar for every option that takes one.

``90`` (a plain number is seconds), ``90s``, ``5m``, ``1h``, ``500ms``, ``1.5m`` and
combinations without spaces (``1h30m``, ``1m30s``), as kubectl and Go's ``time.ParseDuration``
write them (minus Go's ``us``/``ns`` and signs, which no timeout needs). Hand-written: the grammar
is one regular expression, and ``datetime``/``dateutil`` parse instants, not kubectl-style spans.
"""

from __future__ import annotations

import re

_NUMBER = r"\d+(?:\.\d+)?"
_PLAIN = re.compile(_NUMBER)
_PART = re.compile(rf"({_NUMBER})(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
EXAMPLES = "90s, 5m, 1h30m, 500ms"


class DurationError(ValueError):
    """Not a duration; the message says what one looks like (the caller names the option)."""


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h30m``, ``1m30s``, ``1.5m``, ``500ms`` -> seconds."""
    t = text.strip()
    if _PLAIN.fullmatch(t):
        return float(t)
    if not t or _PART.sub("", t) != "" or not _PART.match(t):
        raise DurationError(f"{text!r} is not a duration (examples: {EXAMPLES})")
    return sum(float(n) * _UNIT[u] for n, u in _PART.findall(t))


def format_duration(seconds: float) -> str:
    """Seconds -> ``1h30m``, ``59s``, ``0s`` (whole seconds; the inverse of the grammar)."""
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"
