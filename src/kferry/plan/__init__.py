"""Plan stage: where each source image goes in the private registry, and the lock file."""

from kferry.plan.layout import LAYOUTS, Destination, PlanError, Planned, plan, plan_one, unflatten
from kferry.plan.lock import LOCK_NAME, read_lock, write_lock

__all__ = [
    "LAYOUTS",
    "LOCK_NAME",
    "Destination",
    "PlanError",
    "Planned",
    "plan",
    "plan_one",
    "read_lock",
    "unflatten",
    "write_lock",
]
