"""Model status: is each InferenceService ready, failed (and why) or still deploying.

``classify`` judges one object (rules as data in ``rules``), ``inputs`` reads ``-f`` files,
``source`` defines the pluggable data sources (the cluster part plugs in there), ``follow``
runs one look, ``--wait`` and ``--watch`` over any snapshot stream and maps results to exit
codes.
"""

from kferry.status.classify import DEPLOYING, FAILED, READY, State, StatusResult, classify
from kferry.status.follow import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STILL_DEPLOYING,
    EXIT_USAGE,
    Outcome,
    evaluate,
    exit_code,
    follow,
)
from kferry.status.inputs import Loaded, load_file, load_text
from kferry.status.source import Selector, cluster_read, cluster_snapshots, polling, select

__all__ = [
    "DEPLOYING",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_STILL_DEPLOYING",
    "EXIT_USAGE",
    "FAILED",
    "READY",
    "Loaded",
    "Outcome",
    "Selector",
    "State",
    "StatusResult",
    "classify",
    "cluster_read",
    "cluster_snapshots",
    "evaluate",
    "exit_code",
    "follow",
    "load_file",
    "load_text",
    "polling",
    "select",
]
