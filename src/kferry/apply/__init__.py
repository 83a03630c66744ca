"""Apply stage: server-side apply in dependency order, with the waits Kubeflow needs."""

from kferry.apply.engine import PHASES, Applier, ApplyResult, Progress

__all__ = ["PHASES", "Applier", "ApplyResult", "Progress"]
