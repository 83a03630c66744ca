"""The login chain's configuration, checked in the cluster (``kferry doctor``).

A Kubeflow login works only when four configurations agree (field report section 7):

* Dex (``auth/dex``: ConfigMap ``config.yaml``, Secrets in its environment): the issuer, the
  static client the auth service uses (id, secret, redirect URIs), the static passwords;
* the auth service: oidc-authservice up to Kubeflow 1.8 (StatefulSet ``istio-system/authservice``,
  settings from ConfigMap ``oidc-authservice-parameters`` and Secret ``oidc-authservice-client``:
  kubeflow/manifests@v1.4.1 common/oidc-authservice/base/params.env:1-6), oauth2-proxy from 1.9
  (Deployment ``oauth2-proxy/oauth2-proxy``, its ``oauth2_proxy.cfg`` (TOML) and env:
  kubeflow/manifests@v1.9.1 common/oauth2-proxy/base/oauth2_proxy.cfg:2,78);
* istio, which sends requests to it: 1.4's EnvoyFilter ``authn-filter`` adds ``ext_authz`` with
  ``kubeflow-userid`` among the allowed upstream headers (kubeflow/manifests@v1.4.1
  common/oidc-authservice/base/envoy-filter.yaml:24,42); from 1.9 a CUSTOM AuthorizationPolicy
  names the mesh's extension provider ``oauth2-proxy``, which passes ``authorization`` upstream
  (kubeflow/manifests@v1.9.1
  common/oauth2-proxy/components/istio-external-auth-patches/patches/cm.enable-oauth2-proxy.yaml:
  25-36), and the RequestAuthentication ``dex-jwt`` turns the token's ``email`` claim into
  ``kubeflow-userid`` for Dex's issuer (kubeflow/manifests@v1.9.1
  common/oauth2-proxy/components/istio-external-auth/requestauthentication.dex-jwt.yaml:19,35-36;
  the same lines at 26.03);
* the gateway's routes: from 1.9 the callback (``/oauth2/``) and Dex (``/dex/``) are
  VirtualServices of ``kubeflow/kubeflow-gateway`` (in 1.4 the ext_authz filter itself answers
  the callback);
* Dex's static passwords: one per email (compared in lower case, the last duplicate wins:
  dexidp/dex@v2.41.1 storage/static.go:99-104), bcrypt hashes of cost 10 to 16 (else the login
  fails: server/api.go:147-158, called at server/server.go:524).

Nothing is reported for a cluster without Dex: the chain is not Kubeflow's there. Secrets are
compared, never printed.
"""

from __future__ import annotations

import base64
import binascii
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from kferry.doctor.checks import Finding
from kferry.errors import KferryError
from kferry.kube.client import Kube, KubeError
from kferry.objref import object_ref
from kferry.users.dex import DexInstall

Obj = dict[str, Any]

DEX_NAMESPACE = "auth"
USERID_HEADER = "kubeflow-userid"
_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
_VERSIONS = {
    "networking.istio.io": ("v1", "v1beta1", "v1alpha3"),
    "security.istio.io": ("v1", "v1beta1"),
}
_PLURALS = {
    "EnvoyFilter": ("networking.istio.io", "envoyfilters"),
    "VirtualService": ("networking.istio.io", "virtualservices"),
    "AuthorizationPolicy": ("security.istio.io", "authorizationpolicies"),
    "RequestAuthentication": ("security.istio.io", "requestauthentications"),
}


def _decode(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        return None


@dataclass
class AuthService:
    """What the auth service is configured with (values None when not set or unreadable)."""

    kind: str  # oauth2-proxy | oidc-authservice
    ref: str  # Deployment/oauth2-proxy/oauth2-proxy
    workload: Obj
    issuer: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    redirect_url: str | None = None
    login_url: str | None = None
    userid_header: str | None = None
    where: dict[str, str] = field(default_factory=dict)  # setting -> where it is written


def _list(kube: Kube, kind: str) -> list[Obj]:
    group, plural = _PLURALS[kind]
    for version in _VERSIONS[group]:
        try:
            data = kube.get(f"/apis/{group}/{version}/{plural}")
        except KubeError:
            data = None
        if data is not None:
            return list(data.get("items") or [])
    return []


def _container(workload: Obj, name: str) -> Obj:
    containers = ((workload.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or [{}]
    return next((c for c in containers if c.get("name") == name), containers[0])


class _Env:
    """A container's environment as the kubelet makes it (Secrets and ConfigMaps read)."""

    def __init__(self, kube: Kube, namespace: str, container: Obj) -> None:
        self.values: dict[str, str | None] = {}
        self.where: dict[str, str] = {}
        cache: dict[tuple[str, str], Obj | None] = {}

        def source(kind: str, name: str) -> Obj | None:
            key = (kind, name)
            if key not in cache:
                resource = "secrets" if kind == "Secret" else "configmaps"
                cache[key] = kube.get(f"/api/v1/namespaces/{namespace}/{resource}/{name}")
            return cache[key]

        def value(kind: str, name: str, key: str) -> str | None:
            obj = source(kind, name) or {}
            if kind == "Secret":
                return _decode((obj.get("data") or {}).get(key))
            found = (obj.get("data") or {}).get(key)
            return None if found is None else str(found)

        for item in container.get("envFrom") or []:
            for kind, ref_key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                ref = item.get(ref_key) or {}
                if not ref.get("name"):
                    continue
                obj = source(kind, str(ref["name"])) or {}
                for key in obj.get("data") or {}:
                    var = str(item.get("prefix") or "") + key
                    self.values[var] = value(kind, str(ref["name"]), key)
                    self.where[var] = f"{kind} {namespace}/{ref['name']}"
        for var in container.get("env") or []:
            name = str(var.get("name"))
            refs = var.get("valueFrom") or {}
            if "value" in var:
                self.values[name] = str(var["value"])
                self.where[name] = f"env {name}"
            for kind, ref_key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref = refs.get(ref_key)
                if ref and ref.get("name") and ref.get("key"):
                    self.values[name] = value(kind, str(ref["name"]), str(ref["key"]))
                    self.where[name] = f"{kind} {namespace}/{ref['name']} key {ref['key']}"


def _oauth2_proxy(kube: Kube, workload: Obj) -> AuthService:
    namespace = str(workload["metadata"]["namespace"])
    ref = object_ref("Deployment", namespace, str(workload["metadata"]["name"]))
    service = AuthService("oauth2-proxy", ref, workload)
    container = _container(workload, "oauth2-proxy")
    cfg: dict[str, Any] = {}
    pod = (workload.get("spec") or {}).get("template", {}).get("spec") or {}
    mounts = {m.get("name"): m for m in container.get("volumeMounts") or []}
    for volume in pod.get("volumes") or []:
        source = volume.get("configMap") or {}
        mount = mounts.get(volume.get("name"))
        if not source.get("name") or mount is None:
            continue
        cm = kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{source['name']}") or {}
        for key, text in (cm.get("data") or {}).items():
            if key.endswith(".cfg"):
                try:
                    cfg = tomllib.loads(str(text))
                except tomllib.TOMLDecodeError:
                    continue
                where = f"ConfigMap {namespace}/{source['name']} {key}"
                service.where.update({k: where for k in cfg})
    env = _Env(kube, namespace, container)
    args = {}
    for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
        if str(arg).startswith("--") and "=" in str(arg):
            flag, _, value = str(arg)[2:].partition("=")
            args[flag.replace("-", "_")] = value

    def setting(name: str) -> str | None:
        var = "OAUTH2_PROXY_" + name.upper()
        if name in args:
            service.where[name] = f"container args --{name.replace('_', '-')}"
            return args[name]
        if var in env.values:
            service.where[name] = env.where[var]
            return env.values[var]
        value = cfg.get(name)
        return None if value is None else str(value)

    service.issuer = setting("oidc_issuer_url")
    service.client_id = setting("client_id")
    service.client_secret = setting("client_secret")
    service.redirect_url = setting("redirect_url")
    service.login_url = setting("login_url")
    return service


def _authservice(kube: Kube, workload: Obj) -> AuthService:
    namespace = str(workload["metadata"]["namespace"])
    ref = object_ref(
        str(workload.get("kind", "StatefulSet")), namespace, workload["metadata"]["name"]
    )
    service = AuthService("oidc-authservice", ref, workload)
    env = _Env(kube, namespace, _container(workload, "authservice"))
    service.where = dict(env.where)
    service.issuer = env.values.get("OIDC_PROVIDER")
    service.client_id = env.values.get("CLIENT_ID")
    service.client_secret = env.values.get("CLIENT_SECRET")
    service.redirect_url = env.values.get("REDIRECT_URL")
    service.login_url = env.values.get("OIDC_AUTH_URL")
    service.userid_header = env.values.get("USERID_HEADER") or USERID_HEADER
    service.where = {
        "oidc_issuer_url": env.where.get("OIDC_PROVIDER", ""),
        "client_id": env.where.get("CLIENT_ID", ""),
        "redirect_url": env.where.get("REDIRECT_URL", ""),
    }
    return service


def _ready(workload: Obj) -> tuple[int, int]:
    wanted = int((workload.get("spec") or {}).get("replicas", 1))
    ready = int((workload.get("status") or {}).get("readyReplicas") or 0)
    return ready, wanted


@dataclass
class _Chain:
    dex: DexInstall
    dex_deployment: Obj | None
    service: AuthService | None
    envoy_filters: list[Obj]
    policies: list[Obj]
    request_auths: list[Obj]
    virtual_services: list[Obj]
    mesh: Obj
    profiles: list[Obj]


def _read(kube: Kube) -> _Chain | None:
    try:
        dex = DexInstall.read(kube, DEX_NAMESPACE, need_deployment=False)
    except KferryError:
        return None  # no Dex: not Kubeflow's login chain
    o2p = kube.get("/apis/apps/v1/namespaces/oauth2-proxy/deployments/oauth2-proxy")
    authservice = kube.get("/apis/apps/v1/namespaces/istio-system/statefulsets/authservice")
    service = None
    if o2p is not None:
        o2p.setdefault("kind", "Deployment")
        service = _oauth2_proxy(kube, o2p)
    elif authservice is not None:
        authservice.setdefault("kind", "StatefulSet")
        service = _authservice(kube, authservice)
    mesh: Obj = {}
    istio = kube.get("/api/v1/namespaces/istio-system/configmaps/istio") or {}
    try:
        loaded = yaml.safe_load(str((istio.get("data") or {}).get("mesh") or "{}"))
        mesh = loaded if isinstance(loaded, dict) else {}
    except yaml.YAMLError:
        mesh = {}
    profiles: list[Obj] = []
    for version in ("v1", "v1beta1"):
        try:
            found = kube.get(f"/apis/kubeflow.org/{version}/profiles")
        except KubeError:
            found = None
        if found is not None:
            profiles = list(found.get("items") or [])
            break
    return _Chain(
        dex,
        dex.deployment,
        service,
        _list(kube, "EnvoyFilter"),
        _list(kube, "AuthorizationPolicy"),
        _list(kube, "RequestAuthentication"),
        _list(kube, "VirtualService"),
        mesh,
        profiles,
    )


# -- the checks


def _issuer(chain: _Chain) -> str:
    return str(chain.dex.config.get("issuer") or "")


def readiness(chain: _Chain) -> list[Finding]:
    out = []
    dex_ref = object_ref("Deployment", DEX_NAMESPACE, "dex")
    if chain.dex_deployment is None:
        out.append(
            Finding(
                "error",
                dex_ref,
                "Dex's ConfigMap exists but no Deployment runs it",
                "apply Dex's manifests (common/dex)",
            )
        )
    else:
        ready, wanted = _ready(chain.dex_deployment)
        if ready < wanted:
            out.append(
                Finding(
                    "error",
                    dex_ref,
                    f"Dex is not ready ({ready}/{wanted} pods): nobody can log in",
                    "kubectl -n auth describe pods -l app=dex",
                )
            )
    if chain.service is None:
        out.append(
            Finding(
                "error",
                "Namespace//oauth2-proxy",
                "no auth service: neither oauth2-proxy (Deployment oauth2-proxy/oauth2-proxy, "
                "Kubeflow 1.9+) nor oidc-authservice (StatefulSet istio-system/authservice, "
                "up to 1.8)",
                "apply the release's auth service (common/oauth2-proxy or common/oidc-authservice)",
            )
        )
        return out
    ready, wanted = _ready(chain.service.workload)
    if ready < wanted:
        out.append(
            Finding(
                "error",
                chain.service.ref,
                f"{chain.service.kind} is not ready ({ready}/{wanted} pods): every "
                "request through the gateway fails its ext_authz check",
                f"kubectl -n {chain.service.ref.split('/')[1]} describe pods",
            )
        )
    return out


def routing(chain: _Chain) -> list[Finding]:
    service = chain.service
    if service is None:
        return []
    if service.kind == "oidc-authservice":
        return _envoy_filter(chain, service)
    return _custom_policy(chain, service)


def _envoy_filter(chain: _Chain, service: AuthService) -> list[Finding]:
    host = "authservice.istio-system.svc.cluster.local"
    for ef in chain.envoy_filters:
        text = yaml.safe_dump(ef.get("spec") or {})
        if "ext_authz" not in text:
            continue
        ref = object_ref("EnvoyFilter", ef["metadata"].get("namespace", ""), ef["metadata"]["name"])
        if host not in text:
            return [
                Finding(
                    "error",
                    ref,
                    f"the ext_authz filter does not call {host}",
                    f"point its http_service server_uri at http://{host}",
                )
            ]
        header = service.userid_header or USERID_HEADER
        if f"exact: {header}" not in text:
            return [
                Finding(
                    "error",
                    ref,
                    f"the ext_authz filter does not pass {header} upstream: "
                    "the web apps never learn who the user is",
                    f"add {{exact: {header}}} to authorization_response allowed_upstream_headers",
                )
            ]
        return []
    return [
        Finding(
            "error",
            "EnvoyFilter/istio-system/authn-filter",
            "no EnvoyFilter adds ext_authz to the gateway: requests never reach "
            "oidc-authservice, nobody is asked to log in",
            "apply common/oidc-authservice (its envoy-filter.yaml)",
        )
    ]


def _custom_policy(chain: _Chain, service: AuthService) -> list[Finding]:
    out: list[Finding] = []
    providers = {str(p.get("name")): p for p in chain.mesh.get("extensionProviders") or []}
    custom = [p for p in chain.policies if (p.get("spec") or {}).get("action") == "CUSTOM"]
    if not custom:
        return [
            Finding(
                "error",
                "AuthorizationPolicy/istio-system/istio-ingressgateway-oauth2-proxy",
                "no CUSTOM AuthorizationPolicy sends gateway requests to oauth2-proxy: "
                "nobody is asked to log in, and no kubeflow-userid reaches the apps",
                "apply common/oauth2-proxy/components/istio-external-auth",
            )
        ]
    namespace = service.ref.split("/")[1]
    fqdn = f"oauth2-proxy.{namespace}.svc.cluster.local"
    for policy in custom:
        ref = object_ref(
            "AuthorizationPolicy",
            policy["metadata"].get("namespace", ""),
            policy["metadata"]["name"],
        )
        name = str(((policy.get("spec") or {}).get("provider") or {}).get("name") or "")
        provider = providers.get(name)
        if provider is None:
            out.append(
                Finding(
                    "error",
                    ref,
                    f"names the extension provider {name!r}, which the "
                    "mesh configuration (ConfigMap istio-system/istio, extensionProviders)"
                    " does not define: istio rejects every request it matches",
                    "add the oauth2-proxy envoyExtAuthzHttp provider to the mesh "
                    "config (common/oauth2-proxy/components/istio-external-auth-patches)",
                )
            )
            continue
        http = provider.get("envoyExtAuthzHttp") or {}
        if str(http.get("service", "")) not in (fqdn, f"oauth2-proxy.{namespace}.svc"):
            out.append(
                Finding(
                    "error",
                    ref,
                    f"provider {name} calls {http.get('service')!r}, not oauth2-proxy ({fqdn})",
                    f"service: {fqdn} in the mesh config",
                )
            )
        upstream = [str(h).lower() for h in http.get("headersToUpstreamOnAllow") or []]
        if "authorization" not in upstream:
            out.append(
                Finding(
                    "error",
                    ref,
                    f"provider {name} does not pass the authorization "
                    "header upstream: the gateway never sees Dex's token, so no "
                    "kubeflow-userid is set",
                    "add authorization to headersToUpstreamOnAllow in the mesh config",
                )
            )
    issuers = _jwt_issuers(chain)
    if not issuers:
        out.append(
            Finding(
                "error",
                "RequestAuthentication/istio-system/dex-jwt",
                f"no RequestAuthentication turns Dex's token into {USERID_HEADER}",
                "apply common/oauth2-proxy/components/istio-external-auth "
                "(requestauthentication.dex-jwt.yaml)",
            )
        )
    return out


def _jwt_issuers(chain: _Chain) -> dict[str, str]:
    """issuer -> RequestAuthentication ref, for the rules that set kubeflow-userid."""
    out = {}
    for ra in chain.request_auths:
        for rule in (ra.get("spec") or {}).get("jwtRules") or []:
            headers = [
                str(h.get("header", "")).lower() for h in rule.get("outputClaimToHeaders") or []
            ]
            if USERID_HEADER in headers:
                meta = ra["metadata"]
                out[str(rule.get("issuer"))] = object_ref(
                    "RequestAuthentication", meta.get("namespace", ""), meta["name"]
                )
    return out


def issuers(chain: _Chain) -> list[Finding]:
    dex_issuer = _issuer(chain)
    out: list[Finding] = []
    where = f"ConfigMap {DEX_NAMESPACE}/{chain.dex.configmap['metadata']['name']}"
    service = chain.service
    if service is not None and service.issuer is not None and service.issuer != dex_issuer:
        setting = "oidc_issuer_url" if service.kind == "oauth2-proxy" else "OIDC_PROVIDER"
        out.append(
            Finding(
                "error",
                service.ref,
                f"{service.kind} expects the issuer {service.issuer!r} "
                f"({setting}, {service.where.get('oidc_issuer_url', '')}), but Dex's "
                f"issuer is {dex_issuer!r} ({where}): every login fails at the callback",
                f"make {setting} exactly {dex_issuer!r} (or Dex's issuer match it)",
            )
        )
    if service is not None and service.kind == "oauth2-proxy":
        found = _jwt_issuers(chain)
        if found and dex_issuer not in found:
            for issuer, ref in found.items():
                out.append(
                    Finding(
                        "error",
                        ref,
                        f"sets {USERID_HEADER} from tokens of {issuer!r}, but Dex "
                        f"issues them as {dex_issuer!r}: after login the gateway "
                        "answers 401 'Jwt issuer is not configured'",
                        f"jwtRules issuer: {dex_issuer}",
                    )
                )
    return out


def _dex_clients(chain: _Chain) -> list[tuple[str | None, str | None, list[str]]]:
    """(id, secret, redirectURIs) of each Dex static client, env references resolved."""
    env = chain.dex.env
    out = []
    for client in chain.dex.config.get("staticClients") or []:
        if not isinstance(client, dict):
            continue

        def resolved(client: Obj, key: str, env_key: str) -> str | None:
            if client.get(key):
                return str(client[key])
            var = client.get(env_key)
            source = env.get(str(var)) if var else None
            if source is None or source.secret is None or source.key is None:
                return None
            secret = chain.dex.secrets.get(source.secret) or {}
            return _decode((secret.get("data") or {}).get(source.key))

        out.append(
            (
                resolved(client, "id", "idEnv"),
                resolved(client, "secret", "secretEnv"),
                [str(u) for u in client.get("redirectURIs") or []],
            )
        )
    return out


def clients(chain: _Chain) -> list[Finding]:
    service = chain.service
    if service is None or service.client_id is None:
        return []
    matching = [c for c in _dex_clients(chain) if c[0] == service.client_id]
    dex_where = f"ConfigMap {DEX_NAMESPACE}/{chain.dex.configmap['metadata']['name']} staticClients"
    if not matching:
        return [
            Finding(
                "error",
                service.ref,
                f"{service.kind}'s client id ({service.where.get('client_id', 'its env')}) "
                f"is not the id of any Dex static client ({dex_where}): Dex answers "
                "'Invalid client_id'",
                "give both the same client id",
            )
        ]
    _, secret, redirects = matching[0]
    out = []
    if service.client_secret is not None and secret is not None and secret != service.client_secret:
        out.append(
            Finding(
                "error",
                service.ref,
                f"{service.kind}'s client secret is not the one Dex has for that client "
                f"({dex_where}): the callback fails with 'Invalid client credentials'",
                "give both the same secret (Secrets dex-oidc-client and the auth service's)",
            )
        )
    if service.redirect_url is not None and service.redirect_url not in redirects:
        out.append(
            Finding(
                "error",
                service.ref,
                f"{service.kind} sends the redirect URL {service.redirect_url!r}, which is "
                f"not among the client's redirectURIs {redirects} ({dex_where}): Dex "
                "refuses the login ('Unregistered redirect_uri')",
                f"add {service.redirect_url!r} to the client's redirectURIs",
            )
        )
    return out


def _routed(chain: _Chain, path: str, service: str) -> bool:
    """Does a VirtualService of the Kubeflow gateway send ``path`` to ``service`` (a Service
    name: ``oauth2-proxy``, ``dex``)? A route of ``/`` to the dashboard does not count."""
    for vs in chain.virtual_services:
        spec = vs.get("spec") or {}
        gateways = [str(g) for g in spec.get("gateways") or []]
        if not any(g.endswith("kubeflow-gateway") for g in gateways):
            continue
        for route in spec.get("http") or []:
            hosts = [
                str((d.get("destination") or {}).get("host", "")) for d in route.get("route") or []
            ]
            if not any(h == service or h.startswith(service + ".") for h in hosts):
                continue
            for match in route.get("match") or []:
                prefix = (match.get("uri") or {}).get("prefix")
                if prefix and path.startswith(str(prefix)):
                    return True
    return False


def redirects(chain: _Chain) -> list[Finding]:
    service = chain.service
    if service is None or service.kind != "oauth2-proxy":
        return []  # oidc-authservice answers its callback inside the ext_authz filter
    out = []
    for setting, value, target in (
        ("redirect_url", service.redirect_url, "oauth2-proxy"),
        ("login_url", service.login_url, "dex"),
    ):
        if not value:
            continue
        if value.startswith("/"):
            if not _routed(chain, value, target):
                out.append(
                    Finding(
                        "error",
                        service.ref,
                        f"{setting} {value!r} is a path on the gateway, but no "
                        f"VirtualService of kubeflow/kubeflow-gateway routes it to {target}",
                        f"a VirtualService with a uri prefix of {value!r} to {target}",
                    )
                )
        elif ".svc" in (urlsplit(value).hostname or ""):
            path = "/oauth2/callback" if target == "oauth2-proxy" else "/dex/auth"
            out.append(
                Finding(
                    "warning",
                    service.ref,
                    f"{setting} {value!r} names an in-cluster host that browsers cannot reach",
                    f"use a path through the gateway ({path})",
                )
            )
    return out


def users(chain: _Chain) -> list[Finding]:
    out = []
    where = f"ConfigMap {DEX_NAMESPACE}/{chain.dex.configmap['metadata']['name']}"
    entries = chain.dex.entries
    counts = Counter(str(e.get("email", "")).lower() for e in entries)
    for email, n in sorted(counts.items()):
        if n > 1:
            out.append(
                Finding(
                    "error",
                    f"ConfigMap/{DEX_NAMESPACE}/dex",
                    f"{n} static passwords for {email} ({where}): Dex keeps only the last one "
                    "(and logs an error)",
                    f"kferry users remove {email}, then add it once",
                )
            )
    for entry in entries:
        email = str(entry.get("email", ""))
        stored = chain.dex.hash_of(entry)
        problem = None
        if stored is None:
            var = entry.get("hashFromEnv")
            problem = (
                f"its hashFromEnv {var} is not in Dex's environment" if var else "it has no hash"
            )
        else:
            text = stored if stored.startswith("$2") else (_decode(stored) or stored)
            m = _BCRYPT.match(text)
            if m is None:
                problem = "its hash is not a bcrypt hash Dex can read"
            elif not 10 <= int(m.group(1)) <= 16:
                problem = f"its bcrypt cost {m.group(1)} is outside the 10..16 Dex accepts"
        if problem:
            out.append(
                Finding(
                    "error",
                    f"ConfigMap/{DEX_NAMESPACE}/dex",
                    f"static password of {email}: {problem} ({where}): that user cannot log in",
                    f"kferry users add {email} --reset-password",
                )
            )
    if chain.dex.config.get("connectors"):
        return out  # users may come from a connector: owners need no static password
    emails = {str(e.get("email", "")).lower() for e in entries}
    for profile in chain.profiles:
        owner = (profile.get("spec") or {}).get("owner") or {}
        name = str(owner.get("name") or "")
        if owner.get("kind", "User") == "User" and name and name.lower() not in emails:
            out.append(
                Finding(
                    "warning",
                    f"Profile//{profile['metadata']['name']}",
                    f"its owner {name} has no Dex static password (and Dex has no "
                    "connector): nobody can log in to use this namespace",
                    f"kferry users add {name}",
                )
            )
    return out


CHECKS = (readiness, routing, issuers, clients, redirects, users)


def diagnose_auth(kube: Kube) -> list[Finding]:
    """Every finding about the login chain (none for a cluster without Dex)."""
    chain = _read(kube)
    if chain is None:
        return []
    return [finding for check in CHECKS for finding in check(chain)]
