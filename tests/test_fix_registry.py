"""Fixes are data-driven handlers: each catalog fix has one, each handler its catalog entry."""

from __future__ import annotations

from kferry.catalog import load_fixes
from kferry.fix.engine import FIXES, FixInput, enabled_fixes


def test_every_catalog_fix_has_a_handler_and_back() -> None:
    assert set(FIXES) == set(load_fixes())
    assert all(FIXES[name].name == name for name in FIXES)


def test_needs_gate_the_handlers() -> None:
    bare = FixInput(objects=(), locators={}, registry=None, findings=())
    assert not FIXES["pull-secret"].ready(bare)
    assert FIXES["pull-secret"].ready(FixInput((), {}, None, (), value="regcred"))
    assert not FIXES["knative-skip-tag-resolution"].ready(bare)
    assert FIXES["knative-skip-tag-resolution"].ready(FixInput((), {}, "reg:5000/kf", ()))
    assert "knative-skip-tag-resolution" not in enabled_fixes((), (), knative=False)
    assert "knative-skip-tag-resolution" in enabled_fixes((), (), knative=True)
