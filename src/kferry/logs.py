"""``-v/--verbose`` and ``--debug``: logging to stderr, with secrets taken out.

Requests are logged by httpx itself (logger ``httpx``: method, URL, status, one line each;
every retry is one more such line) and, with ``--debug``, by httpcore (connections, TLS,
response headers). kferry's own loggers (``kferry.*``) add retries and their reason. Every
record passes :class:`Redact` on the way out, so a header value, a password in a URL or a
token in a query string never reaches stderr whichever library logged it.
"""

from __future__ import annotations

import logging
import re
import sys

REDACTED = "<redacted>"

_SECRET_HEADERS = r"(?:proxy-)?authorization|cookie|set-cookie|x-registry-auth|x-auth-token"
_QUERY_SECRETS = r"password|passwd|token|access_token|refresh_token|secret"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # httpcore's header tuples: (b'Authorization', b'Basic ...')
    (
        re.compile(rf"(\(b?['\"](?:{_SECRET_HEADERS})['\"],\s*b?)(['\"]).*?\2\)", re.I),
        rf"\1'{REDACTED}')",
    ),
    # "Authorization: Basic ..." as text
    (re.compile(rf"\b((?:{_SECRET_HEADERS})\s*[:=]\s*)[^\r\n,;]+", re.I), rf"\1{REDACTED}"),
    # Basic / Bearer credentials anywhere
    (re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]{8,}", re.I), rf"\1 {REDACTED}"),
    # user:password@ in a URL
    (re.compile(r"(//[^/\s:@]+):[^/\s@]+@"), rf"\1:{REDACTED}@"),
    # secrets in query strings or forms
    (
        re.compile(rf"\b((?:{_QUERY_SECRETS})=)[^&\s\"']+", re.I),
        rf"\1{REDACTED}",
    ),
)


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class Redact(logging.Filter):
    """Rewrites each record's message with :func:`redact` (handler filter: every logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


def setup_logging(debug: bool = False, verbose: int = 0) -> None:
    """Log to stderr: INFO (requests, retries) with ``-v``, DEBUG with ``--debug`` or ``-vv``."""
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kferry: %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(Redact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("kferry", "httpx", "lightkube"):
        logging.getLogger(name).setLevel(level)
    # httpcore's DEBUG is every connection and header tuple: only with --debug
    logging.getLogger("httpcore").setLevel(logging.DEBUG if debug else logging.WARNING)
