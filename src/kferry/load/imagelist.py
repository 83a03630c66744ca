"""Image lists: one reference per line (``-f LIST``), ``#`` comments and blank lines ignored."""

from __future__ import annotations

import sys

from kferry.errors import InputError
from kferry.load.source import decode, read_capped
from kferry.name import InvalidReference, Reference, parse


def parse_image_args(
    texts: list[str] | tuple[str, ...], where: str = "argument"
) -> list[Reference]:
    out = []
    for text in texts:
        try:
            out.append(parse(text))
        except InvalidReference as exc:
            raise InputError(f"{where} {text!r}: {exc.reason}") from None
    return out


def read_image_list(path: str) -> list[Reference]:
    """References listed in a file (``-`` = stdin); a bad line is an error naming it."""
    if path == "-":
        name, data = "<stdin>", read_capped("<stdin>", sys.stdin.buffer)
    else:
        name = path
        try:
            with open(path, "rb") as f:
                data = read_capped(path, f)
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    out: list[Reference] = []
    for lineno, line in enumerate(decode(name, data).splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            out.append(parse(text))
        except InvalidReference as exc:
            raise InputError(f"{name}: line {lineno}: {exc.reason}: {text!r}") from None
    return out
