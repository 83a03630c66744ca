"""Image references (the ``name`` layer, after go-containerregistry's ``pkg/name``)."""

from kferry.name.reference import (
    DEFAULT_DOMAIN,
    DEFAULT_TAG,
    InvalidReference,
    Reference,
    canonical,
    parse,
    try_parse,
)

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "InvalidReference",
    "Reference",
    "canonical",
    "parse",
    "try_parse",
]
