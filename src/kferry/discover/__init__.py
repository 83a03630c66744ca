"""Discover stage: every image a Kubeflow installation needs and where it is named.

(a) container and CR image fields, (b) images inside strings (ConfigMap JSON/YAML, env, args),
(c) composed images and compiled-in defaults from the catalog. See ``engine.discover``.
"""

from kferry.discover.engine import discover, find_all, group
from kferry.discover.model import Assumption, Finding, Image, Inventory, Location, Part

__all__ = [
    "Assumption",
    "Finding",
    "Image",
    "Inventory",
    "Location",
    "Part",
    "discover",
    "find_all",
    "group",
]
