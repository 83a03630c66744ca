"""Rewrite stage: every discovered reference -> its private-registry target, nothing else.

``textmap`` maps scalar values back to source positions, ``edits`` applies changes, ``insert``
adds list items and keys in the file's own style, ``engine`` turns findings into edits.
"""

from kferry.rewrite.edits import Edit, EditConflict, apply_edits
from kferry.rewrite.engine import Plan, RewriteError, Targeter, locators_for, plan_rewrite

__all__ = [
    "Edit",
    "EditConflict",
    "Plan",
    "RewriteError",
    "Targeter",
    "apply_edits",
    "locators_for",
    "plan_rewrite",
]
