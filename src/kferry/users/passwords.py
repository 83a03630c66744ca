"""Passwords: read without echo or from stdin, hashed with bcrypt (cost 12), never printed.

Dex reads bcrypt hashes (``$2a$``, ``$2b$``, ``$2y$``; pyca ``bcrypt`` writes ``$2b$``) and
refuses costs below 10; 12 is what Kubeflow's own instructions use. bcrypt looks at 72 bytes
at most, so a longer password is refused rather than silently cut.
"""

from __future__ import annotations

import base64
import binascii
from typing import BinaryIO

import bcrypt

from kferry.errors import InputError

BCRYPT_COST = 12
MAX_BYTES = 72


def check_password(password: str) -> str:
    if not password:
        raise InputError("the password is empty")
    size = len(password.encode())
    if size > MAX_BYTES:
        raise InputError(
            f"the password is {size} bytes long in UTF-8, longer than {MAX_BYTES} bytes, all "
            "that bcrypt (Dex's password hash) reads: kferry refuses it rather than cut it "
            f"silently; choose one of at most {MAX_BYTES} bytes"
        )
    return password


def read_password(stream: BinaryIO) -> str:
    """The password piped in (``--password-stdin``): everything, less one trailing newline."""
    data = stream.read()
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise InputError("the password on stdin is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    if "\n" in text or "\r" in text:
        raise InputError("stdin holds more than one line: give the password alone")
    return check_password(text)


def hash_password(password: str) -> str:
    check_password(password)  # never a hash of a password bcrypt would cut
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()


def matches(password: str, stored: str | None) -> bool:
    """Does ``password`` match a hash as Dex stores it (bcrypt text, or its base64, which
    Dex also accepts)? False for anything that is not a bcrypt hash."""
    if not stored:
        return False
    raw = stored.encode()
    if not raw.startswith(b"$2"):
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return False
    try:
        return bcrypt.checkpw(password.encode(), raw)
    except ValueError:
        return False
