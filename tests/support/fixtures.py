"""pytest fixtures for registry tests. Load with ``pytest_plugins = ["tests.support.fixtures"]``.

Every registry fixture is function-scoped: a registry starts in about 30 ms, so each test gets
its own empty registry and nothing leaks between tests. Each is stopped at teardown.

- ``source_registry``: plain HTTP, anonymous (where images come from);
- ``target_registry``: TLS (``ca_file``) + htpasswd (bcrypt) with ``username``/``password``;
- ``token_registry``: TLS + token auth; its HTTPS token server (same CA) is
  ``token_registry.token_server`` (also the ``token_server`` fixture);
- ``any_registry``: each of the three above in turn (parametrizes the test);
- ``registry_factory``: ``start(tls=..., auth=..., ...)`` for more registries (same arguments
  as :func:`tests.support.registry.start_registry`, minus the directory);
- ``make_flaky_proxy``: ``make(registry) -> FlakyProxy`` in front of any registry;
- ``flaky_source``: a FlakyProxy in front of ``source_registry``;
- ``repo``: a repository name unique in the session;
- ``referrers_registry``: plain HTTP, anonymous, with the OCI 1.1 referrers API (the
  go-containerregistry peer of :mod:`tests.support.referrers_registry`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.images import unique_repo
from tests.support.proxy import FlakyProxy, ProxyFactory
from tests.support.referrers_registry import ReferrersRegistry, start_referrers_registry
from tests.support.registry import Registry, RegistryFactory, start_registry
from tests.support.tokenserver import TokenServer


@pytest.fixture
def registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryFactory]:
    started: list[Registry] = []

    def start(*, tls: bool = False, name: str = "registry", **kwargs: Any) -> Registry:
        registry = start_registry(tmp_path_factory.mktemp(name), tls=tls, **kwargs)
        started.append(registry)
        return registry

    yield start
    for registry in reversed(started):
        registry.stop()


@pytest.fixture
def source_registry(registry_factory: RegistryFactory) -> Registry:
    """Plain HTTP, anonymous."""
    return registry_factory(tls=False, auth=None, name="source")


@pytest.fixture
def target_registry(registry_factory: RegistryFactory) -> Registry:
    """TLS + htpasswd (bcrypt)."""
    return registry_factory(tls=True, auth="htpasswd", name="target")


@pytest.fixture
def token_registry(registry_factory: RegistryFactory) -> Registry:
    """TLS + token auth through an HTTPS token server that shares the registry's CA."""
    return registry_factory(tls=True, auth="token", name="token")


@pytest.fixture(params=["source_registry", "target_registry", "token_registry"])
def any_registry(request: pytest.FixtureRequest) -> Registry:
    """Each of the three kinds in turn (parametrizes the test)."""
    registry: Registry = request.getfixturevalue(request.param)
    return registry


@pytest.fixture
def token_server(token_registry: Registry) -> TokenServer:
    """The token server behind ``token_registry``."""
    assert token_registry.token_server is not None
    return token_registry.token_server


@pytest.fixture
def make_flaky_proxy() -> Iterator[ProxyFactory]:
    proxies: list[FlakyProxy] = []

    def make(registry: Registry) -> FlakyProxy:
        proxy = FlakyProxy(registry.url, registry.ca_file)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def flaky_source(source_registry: Registry, make_flaky_proxy: ProxyFactory) -> FlakyProxy:
    """A FlakyProxy in front of ``source_registry``."""
    return make_flaky_proxy(source_registry)


@pytest.fixture
def repo() -> str:
    """A repository name no other test in this session uses."""
    return unique_repo()


@pytest.fixture
def referrers_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferrersRegistry]:
    """Plain HTTP, anonymous, with the referrers API."""
    registry = start_referrers_registry(tmp_path_factory.mktemp("referrers"))
    yield registry
    registry.stop()
