"""``kferry users check``: log in as a browser does, hop by hop, and say which hop broke.

A Kubeflow login crosses four programs: the istio gateway, whose ext_authz filter asks the auth
service (oidc-authservice up to Kubeflow 1.8, oauth2-proxy from 1.9) about every request; the
auth service, which sends the browser to Dex; Dex's local login form; and, back through the
auth service's callback, the web apps, which trust the ``kubeflow-userid`` header. This module
is the browser: an httpx client with a cookie jar (which, like a browser, never sends a
``Secure`` cookie over plain HTTP), redirects followed one at a time so each is recorded, the
oauth2-proxy sign-in button and Dex's login form submitted as a person would. Last it asks the
central dashboard who the session is: ``GET /api/workgroup/env-info`` answers
``{user, platform, namespaces: [{namespace, role, user}], isClusterAdmin}`` in every release
from 1.4 to 26.03 (kubeflow/kubeflow@014684842aa7
components/centraldashboard/app/api_workgroup.ts, route ``/env-info``), with no namespace for
a user no Profile gives one.

What each failure looks like from the browser's side, and so how it is recognised:

* TLS: certificate verification fails -> ``--ca-file``;
* a ``Set-Cookie`` with ``Secure`` on a plain-HTTP site: the browser drops it, and the login
  cannot come back to the auth service (oauth2-proxy then answers 403 "Unable to find a valid
  CSRF token", oauth2-proxy/oauth2-proxy@v7.6.0 oauthproxy.go:875) -> make the cookies
  insecure;
* the same request twice: a redirect loop;
* Dex's form again after the password was sent (Dex renders it with "Invalid ... and
  password.", dexidp/dex@v2.41.1 server/handlers.go:374): a wrong password;
* HTTP 500 at the auth service's callback: it could not redeem Dex's code, which oauth2-proxy
  reports only in its log (its error page says "Oops! Something went wrong", v7.6.0
  pkg/app/pagewriter/error_page.go:15); by far the most common cause is an issuer that is not
  Dex's, so Dex's own issuer is fetched from its discovery document and shown;
* Envoy's "Jwt issuer is not configured" (401) after the callback: the gateway's
  RequestAuthentication expects another issuer than the one that signed the token;
* the dashboard's answer without a namespace: no Profile for this user.

Hand-written because no library drives a login form: the standard library's HTMLParser finds
the forms.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from kferry.errors import InputError, KferryError

ENV_INFO = "/api/workgroup/env-info"
DISCOVERY = "/dex/.well-known/openid-configuration"
MAX_HOPS = 30
CALLBACK_PATHS = ("/oauth2/callback", "/login/oidc", "/authservice/oidc/callback")
INSECURE_COOKIES_FIX = (
    "serve the site over HTTPS, or make the cookies insecure: oauth2-proxy (Kubeflow 1.9+): "
    "FORCE_HTTPS: 'false' in ConfigMap oauth2-proxy/oauth2-proxy-parameters "
    "(OAUTH2_PROXY_COOKIE_SECURE); the web apps: kferry rewrite --fix insecure-cookies"
)


@dataclass
class Hop:
    step: str  # gateway | auth service | dex | dex login | callback | dashboard
    method: str
    host: str
    path: str  # without the query: state and code are not for printing
    status: int | None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "status": self.status,
            "note": self.note,
        }


@dataclass
class Failure:
    hop: int  # 1-based index into the hops (0: before the first)
    step: str
    kind: str  # tls | connect | secure-cookie | redirect-loop | wrong-password | issuer | ...
    message: str
    fix: str

    def to_json(self) -> dict[str, Any]:
        return {
            "hop": self.hop,
            "step": self.step,
            "kind": self.kind,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class LoginResult:
    url: str
    email: str
    hops: list[Hop] = field(default_factory=list)
    user: str | None = None
    namespaces: list[dict[str, str]] = field(default_factory=list)
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "email": self.email,
            "loggedIn": self.ok,
            "user": self.user,
            "namespaces": self.namespaces,
            "hops": [h.to_json() for h in self.hops],
            "failure": self.failure.to_json() if self.failure else None,
        }


class _Stop(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str]  # name -> value (hidden and text inputs)
    types: dict[str, str]  # name -> type


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = Form(a.get("action", ""), a.get("method", "get").lower(), {}, {})
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None and a.get("name"):
            self._open.inputs[a["name"]] = a.get("value", "")
            self._open.types[a["name"]] = a.get("type", "text").lower()

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def forms(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    parser.close()
    return parser.forms


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"--ca-file {ca_file}: cannot load CA certificates: {exc}") from None
    return ctx


def _step(path: str) -> str:
    if path.startswith(CALLBACK_PATHS):
        return "callback"
    if path.startswith("/dex"):
        return "dex"
    if path.startswith(("/oauth2/", "/authservice/")):
        return "auth service"
    if path.startswith(ENV_INFO):
        return "dashboard"
    return "gateway"


def _secure_cookies(response: httpx.Response) -> list[str]:
    names: list[str] = []
    for header in response.headers.get_list("set-cookie"):
        try:
            cookie = SimpleCookie()
            cookie.load(header)
        except CookieError:
            continue
        names += [name for name, morsel in cookie.items() if morsel["secure"]]
    return names


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Browser:
    """One login attempt: the client, the hops so far, the page last seen."""

    def __init__(self, url: str, email: str, password: str, ca_file: Path | None, timeout: float):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"--url {url}: expected http(s)://HOST[:PORT] of the Kubeflow site")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.start = url if parts.path not in ("", "/") else self.base + "/"
        self.plain = parts.scheme == "http"
        self.email, self.password = email, password
        self.result = LoginResult(self.base, email)
        self.client = httpx.Client(
            verify=_ssl_context(ca_file), follow_redirects=False, timeout=timeout
        )
        self.seen: set[tuple[str, str]] = set()
        self.posted = False
        self.called_back = False

    def close(self) -> None:
        self.client.close()

    # -- one request

    def _fail(
        self, kind: str, message: str, fix: str, step: str | None = None, hop: int | None = None
    ) -> _Stop:
        hops = self.result.hops
        hop = len(hops) if hop is None else hop
        where = step or (hops[hop - 1].step if hop else "gateway")
        return _Stop(Failure(hop, where, kind, message, fix))

    def request(self, method: str, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        parts = urlsplit(url)
        step = _step(parts.path)
        if method == "POST" and step == "dex":
            step = "dex login"
        if (method, url) in self.seen and method == "GET":
            raise self._fail(
                "redirect-loop",
                f"redirect loop: {parts.netloc}{parts.path} was asked for twice "
                f"(after {len(self.result.hops)} hops)",
                "a cookie the chain sets does not come back: check the auth service's cookie "
                "domain and the Secure flag on plain HTTP; and that Dex's redirect URL is the "
                "auth service's callback",
                step,
            )
        self.seen.add((method, url))
        if len(self.result.hops) >= MAX_HOPS:
            raise self._fail(
                "redirect-loop", f"more than {MAX_HOPS} hops without logging in", "see the hops"
            )
        try:
            response = self.client.request(method, url, data=data)
        except httpx.TransportError as exc:
            self.result.hops.append(Hop(step, method, parts.netloc, parts.path, None, str(exc)))
            if _is_tls_error(exc):
                raise self._fail(
                    "tls",
                    f"{parts.netloc}: its TLS certificate is not trusted ({exc})",
                    "--ca-file CA.pem with the CA that signed the site's certificate",
                ) from None
            outside = parts.netloc != urlsplit(self.base).netloc
            raise self._fail(
                "connect",
                f"cannot reach {parts.netloc}: {exc}",
                "the chain sends the browser to a host it cannot reach: the auth service's "
                "login URL must go through the gateway (Kubeflow: /dex/auth)"
                if outside
                else "check --url and that the gateway is reachable from here",
            ) from None
        hop = Hop(step, method, parts.netloc, parts.path, response.status_code)
        self.result.hops.append(hop)
        secure = _secure_cookies(response) if self.plain else []
        if secure:
            hop.note = f"sets Secure cookie {', '.join(secure)}"
            raise self._fail(
                "secure-cookie",
                f"{step} sets cookie {', '.join(secure)} with the Secure flag on a plain-HTTP "
                "site: the browser never sends it back, so the login cannot complete",
                INSECURE_COOKIES_FIX,
            )
        return response

    # -- the walk

    def login(self) -> None:
        response = self.request("GET", self.start)
        while True:
            status = response.status_code
            path = urlsplit(str(response.url)).path
            if status in (301, 302, 303, 307, 308):
                location = response.headers.get("location", "")
                target = urljoin(str(response.url), location)
                self.result.hops[-1].note = "-> " + _show(target)
                if _step(path) == "callback":
                    self.called_back = True
                    self.seen.clear()  # progress: the app's page may be asked for again
                response = self.request("GET", target)
                continue
            if _step(path) == "callback":
                self._callback_failed(response)
            page = forms(response.text) if _html(response) else []
            login_form = next((f for f in page if "password" in f.types.values()), None)
            start = next((f for f in page if f.action.rstrip("/").endswith("/oauth2/start")), None)
            if self.called_back and (login_form is not None or start is not None):
                raise self._fail(
                    "redirect-loop",
                    "back at the login after the callback: the session cookie the auth service "
                    "set did not come back with the next request, so the browser would log in "
                    "again and again",
                    "check the auth service's cookie path and domain (oauth2-proxy cookie_path, "
                    "cookie_domains) and the Secure flag on plain HTTP",
                )
            if login_form is not None:
                response = self._submit_password(response, login_form)
                continue
            if start is not None:
                self.result.hops[-1].note = "sign-in page: its button pressed"
                target = httpx.URL(urljoin(str(response.url), start.action), params=start.inputs)
                response = self.request("GET", str(target))
                continue
            if 200 <= status < 300 and self.called_back:
                return
            if 200 <= status < 300:
                raise self._fail(
                    "no-login",
                    f"{_step(path)} answered {status} without asking anyone to log in",
                    "requests must pass the auth service: check the EnvoyFilter (1.4) or the "
                    "CUSTOM AuthorizationPolicy and the mesh's extensionProviders (1.9+) "
                    "(kferry doctor)",
                )
            self._http_error(response)

    def _submit_password(self, response: httpx.Response, form: Form) -> httpx.Response:
        if self.posted:
            raise self._fail(
                "wrong-password",
                f"Dex refused the password for {self.email} (its login form came back"
                + (": 'Invalid ... and password')" if "Invalid" in response.text else ")"),
                f"check the password; kferry users add {self.email} --reset-password sets a "
                "new one (kferry users list shows whether Dex has the user)",
                "dex login",
            )
        action = urljoin(str(response.url), form.action or str(response.url))
        target = urlsplit(action)
        same_host = target.netloc == urlsplit(self.base).netloc
        if target.scheme != "https" and not (self.plain and same_host):
            raise self._fail(
                "plain-http-login",
                f"Dex's login form posts to {target.scheme}://{target.netloc}: the password would "
                "cross the network in clear text to a host --url did not name",
                "serve Dex through the gateway (Kubeflow: /dex/), or over HTTPS",
            )
        self.result.hops[-1].note = "Dex login form"
        fields = {k: v for k, v in form.inputs.items() if form.types.get(k) != "submit"}
        user_field = next(
            (k for k, t in form.types.items() if t in ("text", "email") and k != "password"),
            "login",
        )
        fields[user_field] = self.email
        fields["password"] = self.password
        self.posted = True
        self.seen.clear()
        return self.request("POST", action, data=fields)

    def _callback_failed(self, response: httpx.Response) -> None:
        status = response.status_code
        text = response.text
        if status == 403 and "CSRF" in text:
            raise self._fail(
                "cookie-lost",
                "the auth service did not get back the CSRF cookie it set when the login began",
                "the cookie was dropped: check oauth2-proxy's cookie_domains and that the "
                "callback goes to the same host; over plain HTTP: " + INSECURE_COOKIES_FIX,
            )
        if status >= 500:
            at = len(self.result.hops)
            issuer = self._dex_issuer()
            seen = (
                f"Dex's issuer is {issuer!r} (its discovery document)"
                if issuer
                else ("Dex's discovery document could not be read through the gateway")
            )
            raise self._fail(
                "issuer",
                f"the auth service could not redeem Dex's login code (HTTP {status} at its "
                f"callback); the usual cause is an issuer that does not match: {seen}",
                "make the auth service's issuer exactly Dex's issuer: oauth2-proxy "
                "oidc_issuer_url (1.9+) or oidc-authservice OIDC_PROVIDER (1.4), and the "
                "RequestAuthentication dex-jwt issuer; then check the client id and secret "
                "(kferry doctor compares them all)",
                hop=at,
            )
        self._http_error(response)

    def _dex_issuer(self) -> str | None:
        try:
            response = self.client.get(self.base + DISCOVERY)
            self.result.hops.append(
                Hop("dex", "GET", urlsplit(self.base).netloc, DISCOVERY, response.status_code)
            )
            if response.status_code == 200:
                issuer = response.json().get("issuer")
                return str(issuer) if issuer else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return None

    def _http_error(self, response: httpx.Response) -> None:
        status = response.status_code
        body = " ".join(response.text.split())[:200]
        step = self.result.hops[-1].step
        if status == 401 and "jwt issuer" in body.lower():
            raise self._fail(
                "issuer",
                f"the gateway refuses the token Dex issued: {body} (its RequestAuthentication "
                "expects another issuer)",
                "the RequestAuthentication dex-jwt (istio-system) must name Dex's issuer "
                "(kferry doctor compares them)",
            )
        if "redirect_uri" in body.lower() or "redirect uri" in body.lower():
            raise self._fail(
                "redirect-uri",
                f"Dex refused the auth service's redirect URL ({status}: {body})",
                "the redirect URL of the auth service (oauth2-proxy redirect_url, "
                "oidc-authservice REDIRECT_URL) must be in Dex's staticClients redirectURIs",
            )
        if "client" in body.lower() and step == "dex":
            raise self._fail(
                "client",
                f"Dex does not know the auth service's client ({status}: {body})",
                "the auth service's client id must be a Dex staticClients id (kferry doctor)",
            )
        raise self._fail(
            "http",
            f"{step} answered HTTP {status}: {body or '(no body)'}",
            "see the hops above; kferry doctor checks the chain's configuration",
        )

    def whoami(self) -> None:
        response = self.request("GET", self.base + ENV_INFO)
        status = response.status_code
        body = " ".join(response.text.split())[:200]
        if status in (301, 302, 303, 307, 308):
            raise self._fail(
                "session-lost",
                "the dashboard sent the browser back to log in: the session cookie did not "
                "come back",
                "check the auth service's cookie (domain, Secure flag on plain HTTP)",
            )
        if status == 403:
            raise self._fail(
                "forbidden",
                f"the dashboard refused {self.email} (403: {body})",
                f"give the user a Profile: kferry users add {self.email}; or check the "
                "AuthorizationPolicy central-dashboard (kubeflow)",
            )
        if status != 200:
            self._http_error(response)
        try:
            info = response.json()
        except json.JSONDecodeError:
            raise self._fail(
                "http", f"the dashboard's {ENV_INFO} is not JSON: {body}", "see the hops"
            ) from None
        if not isinstance(info, dict):
            raise self._fail("http", f"{ENV_INFO} answered {body}", "see the hops")
        self.result.user = str(info.get("user") or "") or None
        self.result.namespaces = [
            {k: str(b.get(k, "")) for k in ("namespace", "role")}
            for b in info.get("namespaces") or []
            if isinstance(b, dict)
        ]
        self.result.hops[-1].note = f"user {self.result.user}"
        if self.result.user and self.result.user.lower() != self.email.lower():
            raise self._fail(
                "wrong-user",
                f"the platform sees {self.result.user}, not {self.email}",
                "the kubeflow-userid header must come from the email claim (USERID_CLAIM, or "
                "the RequestAuthentication's outputClaimToHeaders)",
            )
        if not self.result.namespaces:
            raise self._fail(
                "no-profile",
                f"{self.email} is logged in, but no Profile gives them a namespace",
                f"kferry users add {self.email} (creates the Profile; the password stays)",
            )


def check_login(
    url: str, email: str, password: str, *, ca_file: Path | None = None, timeout: float = 30.0
) -> LoginResult:
    """Log in to ``url`` as ``email`` and ask the dashboard who that is."""
    browser = Browser(url, email, password, ca_file, timeout)
    try:
        browser.login()
        browser.whoami()
    except _Stop as stop:
        browser.result.failure = stop.failure
    except httpx.HTTPError as exc:
        raise KferryError(f"{url}: {exc}") from None
    finally:
        browser.close()
    return browser.result


def _html(response: httpx.Response) -> bool:
    return "html" in response.headers.get("content-type", "")


def _show(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"
