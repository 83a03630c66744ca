"""Container image references: one parser and one canonical form for all of kferry.

This follows the grammar of github.com/distribution/reference (the grammar Docker,
containerd, CRI-O and every OCI registry client accept) and its normalisation rules
(``normalize.go``). No maintained Python library implements that grammar and the Docker Hub
normalisation together, which is why it is written here; it is small and fully covered by
property tests against the grammar (tests/test_reference.py).

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [domain "/"] remote-name
    domain          := host [":" port-number]
    host            := domain-name | IPv4address | "[" IPv6address "]"
    domain-name     := domain-component ["." domain-component]*
    domain-component:= /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    remote-name     := path-component ["/" path-component]*
    path-component  := alpha-numeric [separator alpha-numeric]*
    separator       := /[_.]|__|[-]+/
    tag             := /[\\w][\\w.-]{0,127}/
    digest          := algorithm ":" hex   (sha256: 64 lowercase hex, sha512: 128)

Canonical form: ``domain/remote-name[:tag][@digest]`` with Docker Hub written as
``docker.io``, single-component Hub names under ``library/`` and ``:latest`` when neither a
tag nor a digest is given (``python:3.7`` -> ``docker.io/library/python:3.7``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "InvalidReference",
    "Reference",
    "canonical",
    "is_digest",
    "parse",
    "try_parse",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_KNOWN_DIGESTS = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(ValueError):
    """A string that is not a valid image reference; ``reason`` says why."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid image reference {text!r}: {reason}")
        self.text = text
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed, normalised image reference.

    ``domain`` is always set (``docker.io`` for Docker Hub), ``path`` is the repository path
    inside the registry (``library/python``), ``tag`` and ``digest`` are ``None`` when absent.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """``domain/path``: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def canonical(self) -> str:
        """The one canonical spelling: full domain, ``library/`` for Hub, ``:latest`` default."""
        if self.tag is None and self.digest is None:
            return f"{self.repository}:{DEFAULT_TAG}"
        out = self.repository
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def digest_algorithm(self) -> str | None:
        """``sha256`` for ``...@sha256:...``; None without a digest."""
        return self.digest.partition(":")[0] if self.digest else None

    def with_digest(self, digest: str | None) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)

    def at(self, identifier: str) -> Reference:
        """This repository at a tag or a digest (what a registry API path names)."""
        if is_digest(identifier):
            return Reference(self.domain, self.path, None, identifier)
        return Reference(self.domain, self.path, identifier, None)

    def __str__(self) -> str:
        return self.canonical


def is_digest(identifier: str) -> bool:
    """A manifest identifier (a tag or ``algorithm:hex``) names a digest: a tag never holds a
    ``:`` (grammar above), a digest always does."""
    return ":" in identifier


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's splitDockerDomain: is the first component a registry host?"""
    i = name.find("/")
    if i == -1:
        return DEFAULT_DOMAIN, name
    first = name[:i]
    if not any(c in first for c in ".:") and first != "localhost" and first.lower() == first:
        return DEFAULT_DOMAIN, name
    return first, name[i + 1 :]


@lru_cache(maxsize=65536)
def parse(text: str) -> Reference:
    """Parse ``text`` as an image reference; raise :class:`InvalidReference` with a reason."""
    if not isinstance(text, str):
        raise InvalidReference(repr(text), "not a string")
    if text == "":
        raise InvalidReference(text, "empty string")
    if text != text.strip():
        raise InvalidReference(text, "leading or trailing whitespace")
    if any(c.isspace() for c in text):
        raise InvalidReference(text, "contains whitespace")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference(text, "a 64-character hex string is an image ID, not a name")

    rest = text
    digest: str | None = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if "@" in digest:
            raise InvalidReference(text, "more than one '@'")
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidReference(text, f"invalid digest {digest!r}")
        algo, _, hexpart = digest.partition(":")
        want = _KNOWN_DIGESTS.get(algo)
        if want is None:
            raise InvalidReference(text, f"unsupported digest algorithm {algo!r}")
        if len(hexpart) != want or hexpart != hexpart.lower():
            raise InvalidReference(text, f"{algo} digest must be {want} lowercase hex characters")
        if rest == "":
            raise InvalidReference(text, "digest without a repository name")

    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(text, f"invalid tag {tag!r}")

    if rest == "":
        raise InvalidReference(text, "missing repository name")

    domain, path = _split_domain(rest)
    if path == "":
        raise InvalidReference(text, "missing repository path after the registry host")
    if domain is not DEFAULT_DOMAIN and not _DOMAIN_RE.fullmatch(domain):
        raise InvalidReference(text, f"invalid registry host {domain!r}")
    if not _PATH_RE.fullmatch(path):
        if path.lower() != path and _PATH_RE.fullmatch(path.lower()):
            raise InvalidReference(text, "repository name must be lowercase")
        raise InvalidReference(text, f"invalid repository path {path!r}")

    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            text, f"repository name longer than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    return Reference(domain, path, tag, digest)


def try_parse(text: str) -> Reference | None:
    """Like :func:`parse` but returns ``None`` instead of raising."""
    try:
        return parse(text)
    except InvalidReference:
        return None


def canonical(text: str) -> str:
    """The canonical form of ``text`` (raises :class:`InvalidReference`)."""
    return parse(text).canonical
