"""Report stage: a page for the people who approve a transfer (see ``model``, ``measure``,
``render``)."""

from kferry.report.measure import measure, platform_matches
from kferry.report.model import COMPONENT_LABELS, Group, PlatformSize, Report, Row, Use, rows_of
from kferry.report.render import human, to_html, to_markdown

__all__ = [
    "COMPONENT_LABELS",
    "Group",
    "PlatformSize",
    "Report",
    "Row",
    "Use",
    "human",
    "measure",
    "platform_matches",
    "rows_of",
    "to_html",
    "to_markdown",
]
