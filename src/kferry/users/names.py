"""Names derived from an email: the Profile (and namespace), the Dex userID, the env key."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Collection

from kferry.errors import InputError

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# uuid5 namespace for Dex userIDs kferry makes: the same email always gets the same userID.
_USER_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://kferry.dev/users/dex-user-id")


def check_email(email: str) -> str:
    """The email as given, or InputError: one ``@``, no spaces or control characters."""
    if not _EMAIL.fullmatch(email) or any(ord(c) < 32 or c == "\x7f" for c in email):
        raise InputError(f"{email!r} is not an email address (expected name@domain)")
    return email


def profile_name_for(email: str) -> str:
    """The default Profile name: lowercase, every character outside ``[a-z0-9-]`` replaced by
    ``-``, runs collapsed, trimmed, at most 63 characters (``alice@example.com`` ->
    ``alice-example-com``)."""
    name = re.sub(r"[^a-z0-9-]", "-", email.lower())
    name = re.sub(r"-+", "-", name).strip("-")[:63].rstrip("-")
    if not name:
        raise InputError(f"{email!r}: no Profile name can be made from it; give --profile NAME")
    return name


def check_profile_name(name: str) -> str:
    if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
        raise InputError(
            f"--profile {name!r}: a Profile (and its namespace) needs a DNS label: at most 63 "
            "characters a-z, 0-9 and '-', starting and ending with a letter or digit"
        )
    return name


def user_id_for(email: str) -> str:
    """A stable Dex ``userID`` for an email (uuid5; case-insensitive like Dex's lookups)."""
    return str(uuid.uuid5(_USER_ID_NAMESPACE, email.lower()))


def env_key_for(email: str, taken: Collection[str] = ()) -> str:
    """``DEX_<EMAIL>_PASSWORD`` (upper case, ``_`` for anything else); a short hash of the
    email is appended if that name is ``taken`` (by another user's entry)."""
    base = re.sub(r"_+", "_", re.sub(r"[^A-Z0-9]", "_", email.upper())).strip("_")
    key = f"DEX_{base}_PASSWORD"
    if key in taken:
        digest = hashlib.sha256(email.lower().encode()).hexdigest()[:8].upper()
        key = f"DEX_{base}_{digest}_PASSWORD"
    return key
