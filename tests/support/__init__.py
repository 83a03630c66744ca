"""Real-parts test harness for registry work: a real CNCF distribution registry (plain, TLS,
htpasswd, token auth), a Docker token server, image builders that push with raw registry API
calls, a fault-injecting reverse proxy and skopeo as the independent client.

Fixtures live in :mod:`tests.support.fixtures`; load them with
``pytest_plugins = ["tests.support.fixtures"]``.
"""
