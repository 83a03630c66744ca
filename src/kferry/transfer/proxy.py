"""``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``, read the way skopeo, podman and containerd
read them (they are Go programs: golang.org/x/net/http/httpproxy), so one environment serves
them all on the connected side.

The rules (golang/net@v0.56.0 http/httpproxy/proxy.go):

- ``HTTPS_PROXY`` for https URLs, ``HTTP_PROXY`` for http URLs; the upper-case name wins over
  the lower-case one (:90 FromEnvironment); ``HTTP_PROXY`` is ignored under CGI
  (``REQUEST_METHOD`` set); a value without a scheme means ``http://`` (:147 parseProxy).
- Loopback is never proxied: ``localhost`` and every loopback address, whatever ``NO_PROXY``
  says (:178-187 useProxy).
- ``NO_PROXY`` is comma-separated (:207 init): ``*`` (nothing proxied), an IP or CIDR
  (``10.0.0.0/8``), an IP or name with a port (``10.1.2.3:5000``, ``harbor.corp:8443``), a
  name (``corp.example`` matches itself and every subdomain), ``.corp.example`` or
  ``*.corp.example`` (subdomains only). Names match names, IPs match IPs (:365 domainMatch).

Hand-written because httpx's environment support (``trust_env``) follows urllib's rules (no
CIDR, loopback proxied unless listed) and replaces the transport kferry's retries live in;
this module only decides, per URL, which proxy (if any) a request goes through: see
:class:`kferry.transfer.transport.ProxyRouter`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

_DEFAULT_PORT = {"http": "80", "https": "443"}


def _env(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return ""


def _parse_proxy(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        value = "http://" + value
    return value


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str  # "ip", "net", "name"
    value: str
    port: str = ""
    exact_too: bool = True  # "corp.example" matches itself; ".corp.example" does not


def _split_host_port(text: str) -> tuple[str, str]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, ""


@dataclass(frozen=True)
class ProxyConfig:
    """Which proxy a URL goes through (``None``: direct)."""

    https_proxy: str | None = None
    http_proxy: str | None = None
    everything_direct: bool = False
    rules: tuple[_Rule, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyConfig:
        env = os.environ if env is None else env
        cgi = bool(env.get("REQUEST_METHOD"))
        https = _parse_proxy(_env(env, "HTTPS_PROXY", "https_proxy"))
        http = None if cgi else _parse_proxy(_env(env, "HTTP_PROXY", "http_proxy"))
        rules: list[_Rule] = []
        for raw in _env(env, "NO_PROXY", "no_proxy").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls(https, http, everything_direct=True)
            if "/" in entry:
                with contextlib.suppress(ValueError):  # malformed: ignored, as Go does
                    rules.append(_Rule("net", str(ipaddress.ip_network(entry, strict=False))))
                continue
            host, port = _split_host_port(entry)
            if not host:
                continue
            try:
                rules.append(_Rule("ip", str(ipaddress.ip_address(host)), port))
                continue
            except ValueError:
                pass
            if host.startswith("*."):
                host = host[1:]
            exact = not host.startswith(".")
            rules.append(_Rule("name", host if not exact else "." + host, port, exact))
        return cls(https, http, rules=tuple(rules))

    @property
    def active(self) -> bool:
        return not self.everything_direct and bool(self.https_proxy or self.http_proxy)

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for a request to ``url``, or None to connect directly."""
        parts = urlsplit(url)
        proxy = {"https": self.https_proxy, "http": self.http_proxy}.get(parts.scheme)
        if proxy is None or self.everything_direct:
            return None
        host = (parts.hostname or "").lower()
        port = str(parts.port) if parts.port else _DEFAULT_PORT.get(parts.scheme, "")
        return None if self.bypass(host, port) else proxy

    def bypass(self, host: str, port: str) -> bool:
        if not host or host == "localhost":
            return True
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            return True
        for rule in self.rules:
            if rule.kind == "net" and ip is not None:
                if ip in ipaddress.ip_network(rule.value):
                    return True
            elif rule.kind == "ip" and ip is not None:
                if ip == ipaddress.ip_address(rule.value) and rule.port in ("", port):
                    return True
            elif rule.kind == "name" and ip is None:
                named = host.endswith(rule.value) or (rule.exact_too and host == rule.value[1:])
                if named and rule.port in ("", port):
                    return True
        return False


def redact(proxy: str) -> str:
    """A proxy URL for messages: its user and password (if any) left out."""
    parts = urlsplit(proxy)
    if "@" not in parts.netloc:
        return proxy
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
