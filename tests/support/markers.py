"""Honest markers: a test that starts a server must carry the marker that names it.

``pytest -m "not registry and not cluster and not node"`` (the fast subset) is only worth
something if no test in it starts a registry, a cluster or a node. So the markers are checked,
not trusted; a test that lacks one fails (setup error, with the marker to add), it does not
silently slow the fast subset down:

- by fixture name: a test that uses (directly, through another fixture, or with
  ``request.getfixturevalue``) a fixture of :data:`SERVER_FIXTURES` needs that marker;
- by what actually starts: the harnesses call :func:`started` when they start a server
  (``start_registry``, ``start_token_server``, ``start_cluster``, ``start_node``); the test
  being set up or run must carry the marker, and any fixture that was being set up at that
  moment (a module's own ``cluster`` fixture, say) is remembered as needing it, so every later
  test that uses that fixture is checked too, even though the server is already running.

Outside pytest (``python -m tests.support.cluster start``) :func:`started` does nothing.

``slow`` is not checked (it is about time, which tests never measure); the README's test
section says when to use it. Loaded from ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from typing import Any

import pytest

REGISTRY = "registry"
CLUSTER = "cluster"
NODE = "node"

# Fixtures of tests/support that start (or hand out) a server, and the marker each needs.
SERVER_FIXTURES: dict[str, str] = {
    "registry_factory": REGISTRY,
    "source_registry": REGISTRY,
    "target_registry": REGISTRY,
    "token_registry": REGISTRY,
    "any_registry": REGISTRY,
    "token_server": REGISTRY,
    "flaky_source": REGISTRY,
    "referrers_registry": REGISTRY,
    "kube_cluster": CLUSTER,
    "kube_controllers": CLUSTER,
    "kube_cluster_121": CLUSTER,
    "kube": CLUSTER,
    "kube_121": CLUSTER,
}

_current: pytest.Item | None = None
# The fixtures being set up now, innermost last, as (name, baseid): two modules may each
# define a fixture of the same name (``site``), and what one of them starts says nothing of
# the other, so what is learned is kept per definition (its baseid is the nodeid prefix of the
# tests that can see it).
_setting_up: list[tuple[str, str]] = []
_learned: dict[tuple[str, str], set[str]] = {}  # (name, baseid) -> markers it was seen to need


def _needed(nodeid: str, fixturenames: Iterable[str]) -> dict[str, set[str]]:
    """marker -> the fixtures that need it."""
    needed: dict[str, set[str]] = {}
    for name in fixturenames:
        markers = {
            marker
            for (argname, baseid), learned in _learned.items()
            if argname == name and nodeid.startswith(baseid)
            for marker in learned
        }
        if name in SERVER_FIXTURES:
            markers.add(SERVER_FIXTURES[name])
        for marker in markers:
            needed.setdefault(marker, set()).add(name)
    return needed


def _fail(item: pytest.Item, marker: str, why: str) -> None:
    pytest.fail(
        f"{item.nodeid} {why} but is not marked {marker!r}: add pytest.mark.{marker} to the test "
        f"or the module's pytestmark (see README, Tests)",
        pytrace=False,
    )


def _check(item: pytest.Item, fixturenames: Iterable[str]) -> None:
    for marker, names in sorted(_needed(item.nodeid, fixturenames).items()):
        if item.get_closest_marker(marker) is None:
            _fail(item, marker, f"uses the fixture(s) {', '.join(sorted(names))}")


def started(marker: str, what: str) -> None:
    """Called by a harness as it starts ``what``: the running test must be marked ``marker``."""
    for key in _setting_up:
        _learned.setdefault(key, set()).add(marker)
    if _current is not None and _current.get_closest_marker(marker) is None:
        _fail(_current, marker, f"starts {what}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, Any, Any]:
    global _current
    _current = item
    try:
        return (yield)
    finally:
        _current = None


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    _setting_up.append((fixturedef.argname, fixturedef.baseid))
    try:
        return (yield)
    finally:
        _setting_up.pop()


@pytest.fixture(autouse=True)
def _honest_markers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Before the test: the fixtures it asked for; after it: also those it asked for on the
    way (``request.getfixturevalue``)."""
    _check(request.node, request.fixturenames)
    yield
    _check(request.node, request.fixturenames)
