"""Image references (the ``name`` layer, after go-containerregistry's ``pkg/name``)."""

from kferry.name.reference import (
    DEFAULT_DOMAIN,
    DEFAULT_TAG,
    InvalidReference,
    Reference,
    canonical,
    is_digest,
    parse,
    try_parse,
)

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
