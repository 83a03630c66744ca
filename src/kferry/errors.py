"""Errors every stage raises; the CLI maps them to exit codes and one-line messages."""

from __future__ import annotations


class KferryError(Exception):
    """Base class: an error with a one-line, user-facing message."""

    exit_code = 1


class InputError(KferryError):
    """Bad input (files, YAML, arguments): exit code 2, message names file, document, path."""

    exit_code = 2
