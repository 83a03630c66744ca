"""Knowledge about Kubeflow components, kept as data (``catalog/data/*.yaml``).

Where images hide, which are composed from parts, which controllers pull by compiled-in
default and which serve only optional features: each entry cites its upstream source. The
engines in :mod:`kferry.discover` (and later rewrite/fix) read this; they hold no component
names of their own.
"""

from kferry.catalog.defaults import (
    Choice,
    Component,
    DefaultEntry,
    DefaultOverride,
    DefaultRule,
)
from kferry.catalog.model import (
    Catalog,
    ComposedRecipe,
    OptionalRule,
    catalog_files,
    load_catalog,
    load_fixes,
)

__all__ = [
    "Catalog",
    "Choice",
    "Component",
    "ComposedRecipe",
    "DefaultEntry",
    "DefaultOverride",
    "DefaultRule",
    "OptionalRule",
    "catalog_files",
    "load_catalog",
    "load_fixes",
]
