"""Plan stage: where each source image goes in the private registry, and the lock file."""

from kferry.plan.layout import (
    LAYOUTS,
    Layout,
    PlanError,
    Planned,
    Target,
    plan,
    plan_one,
    unflatten,
)
from kferry.plan.lock import LOCK_NAME, Lock, LockEntry, read_lock, write_lock

__all__ = [
    "LAYOUTS",
    "LOCK_NAME",
    "Layout",
    "Lock",
    "LockEntry",
    "PlanError",
    "Planned",
    "Target",
    "plan",
    "plan_one",
    "read_lock",
    "unflatten",
    "write_lock",
]
