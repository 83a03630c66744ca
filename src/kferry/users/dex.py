"""Dex's static passwords as Kubeflow installs them: read, planned edits, restart.

Two layouts, detected from what the cluster has:

- ``hash`` (Kubeflow 1.4): ConfigMap ``auth/dex``, key ``config.yaml``; each
  ``staticPasswords`` entry carries its bcrypt ``hash`` inline;
- ``hashFromEnv`` (Kubeflow 1.9 and later): entries name an environment variable
  (``hashFromEnv: DEX_USER_PASSWORD``) whose value, the hash, comes from the Secret
  ``auth/dex-passwords`` that the Deployment ``auth/dex`` loads with ``envFrom``. A new user gets a
  new key in that Secret (``DEX_ALICE_EXAMPLE_COM_PASSWORD``) and an entry pointing at it.

The ConfigMap is the one the Deployment mounts (``dex`` in every Kubeflow release), and the
Secrets are the ones its container reads its environment from. ``config.yaml`` is edited in its
own text (:mod:`kferry.users.dexconfig`): only the lines of the entry that changes are written,
every other byte (comments, connectors, clients, unknown keys) stays. Each edited text is parsed
again and must give exactly the intended settings; where the file's layout is one those edits do
not cover, it is written back whole with PyYAML, and the change's detail says that its comments
were not kept. Secret values are base64 in the API and are never printed.

Dex reads its configuration at start only, so a change is followed by the ``kubectl rollout
restart`` annotation on its Deployment.
"""

from __future__ import annotations

import base64
import binascii
import copy
from dataclasses import dataclass, field
from typing import Any

import yaml

from kferry.errors import InputError, KferryError
from kferry.kube import Kube
from kferry.users.dexconfig import DexConfigText
from kferry.users.names import env_key_for, user_id_for
from kferry.users.passwords import hash_password, matches

DEFAULT_NAMESPACE = "auth"
DEPLOYMENT = "dex"
CONFIGMAP = "dex"
CONFIG_KEY = "config.yaml"
PASSWORD_SECRET = "dex-passwords"

HASH = "hash"
HASH_FROM_ENV = "hashFromEnv"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REWRITTEN = "config.yaml written back whole: its comments and formatting were not kept"

Obj = dict[str, Any]


@dataclass(frozen=True)
class EnvSource:
    """Where one of Dex's environment variables comes from: a Secret's key, or a literal."""

    secret: str | None = None
    key: str | None = None
    literal: bool = False


@dataclass
class DexChange:
    """What an add or remove does to Dex: the objects to write (None: unchanged)."""

    action: str  # added | updated | unchanged | removed | absent
    configmap: Obj | None = None
    secret: Obj | None = None
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.configmap is not None or self.secret is not None


def _b64decode(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        return None


def _container(deployment: Obj) -> Obj:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get(
        "containers"
    ) or [{}]
    for c in containers:
        if c.get("name") == "dex":
            return dict(c)
    return dict(containers[0])


def _mounted_config(deployment: Obj) -> tuple[str, str] | None:
    """(ConfigMap name, key) of the config.yaml the Deployment mounts, if it says."""
    volumes = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
    for volume in volumes:
        source = volume.get("configMap")
        if not source or not source.get("name"):
            continue
        items = source.get("items") or []
        for item in items:
            if str(item.get("path", "")).rsplit("/", 1)[-1] == CONFIG_KEY:
                return str(source["name"]), str(item["key"])
        if not items:
            return str(source["name"]), CONFIG_KEY
    return None


@dataclass
class DexInstall:
    """Dex as one cluster runs it: Deployment, configuration and password Secrets."""

    kube: Kube
    namespace: str
    deployment: Obj | None
    configmap: Obj
    config_key: str
    config: Obj
    secrets: dict[str, Obj] = field(default_factory=dict)  # the Secrets Dex's env comes from
    env: dict[str, EnvSource] = field(default_factory=dict)  # variable -> where it comes from
    env_from: list[tuple[str, str]] = field(default_factory=list)  # (Secret, prefix), in order

    @property
    def where(self) -> str:
        return f"ConfigMap {self.namespace}/{self.configmap['metadata']['name']}"

    @classmethod
    def read(cls, kube: Kube, namespace: str, *, need_deployment: bool = True) -> DexInstall:
        deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT}")
        if deployment is None and need_deployment:
            raise KferryError(
                f"no Deployment {namespace}/{DEPLOYMENT}: is Dex installed there? "
                "(--dex-namespace names another namespace)"
            )
        name, key = (_mounted_config(deployment) if deployment else None) or (CONFIGMAP, CONFIG_KEY)
        configmap = kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        if configmap is None:
            raise KferryError(f"no ConfigMap {namespace}/{name}: Dex's configuration is missing")
        text = (configmap.get("data") or {}).get(key)
        if text is None:
            raise KferryError(f"ConfigMap {namespace}/{name} has no key {key}")
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise KferryError(f"ConfigMap {namespace}/{name} {key}: not YAML: {exc}") from None
        if not isinstance(config, dict) or not isinstance(
            config.get("staticPasswords") or [], list
        ):
            raise KferryError(f"ConfigMap {namespace}/{name} {key}: not a Dex configuration")
        install = cls(kube, namespace, deployment, configmap, key, config)
        if deployment is not None:
            install._read_env(_container(deployment))
        return install

    def _secret(self, name: str) -> Obj | None:
        if name not in self.secrets:
            secret = self.kube.get(f"/api/v1/namespaces/{self.namespace}/secrets/{name}")
            if secret is None:
                return None
            self.secrets[name] = secret
        return self.secrets[name]

    def _read_env(self, container: Obj) -> None:
        """Expand env the way the kubelet does: envFrom in order (later wins), then env."""
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef") or {}
            if not ref.get("name"):
                continue
            prefix = str(source.get("prefix") or "")
            self.env_from.append((str(ref["name"]), prefix))
            secret = self._secret(str(ref["name"]))
            for key in (secret or {}).get("data") or {}:
                self.env[prefix + key] = EnvSource(str(ref["name"]), key)
        for var in container.get("env") or []:
            ref = (var.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") and ref.get("key"):
                self._secret(str(ref["name"]))
                self.env[str(var["name"])] = EnvSource(str(ref["name"]), str(ref["key"]))
            else:
                self.env[str(var["name"])] = EnvSource(literal=True)

    # -- reading entries

    @property
    def entries(self) -> list[Obj]:
        return [e for e in self.config.get("staticPasswords") or [] if isinstance(e, dict)]

    def find(self, email: str) -> Obj | None:
        """The entry for ``email`` (Dex compares emails case-insensitively)."""
        for entry in self.entries:
            if str(entry.get("email", "")).lower() == email.lower():
                return entry
        return None

    @property
    def emails(self) -> list[str]:
        return [str(e["email"]) for e in self.entries if e.get("email")]

    @property
    def layout(self) -> str:
        """``hashFromEnv`` if any entry uses it (or, with none yet, Dex loads the
        ``dex-passwords`` Secret); ``hash`` otherwise."""
        if any(e.get(HASH_FROM_ENV) and not e.get(HASH) for e in self.entries):
            return HASH_FROM_ENV
        if any(e.get(HASH) for e in self.entries):
            return HASH
        return HASH_FROM_ENV if any(s == PASSWORD_SECRET for s, _ in self.env_from) else HASH

    def hash_of(self, entry: Obj) -> str | None:
        """The hash Dex would use for ``entry`` (inline first, as Dex does), if it can be read."""
        if entry.get(HASH):
            return str(entry[HASH])
        source = self.env.get(str(entry.get(HASH_FROM_ENV) or ""))
        if source is None or source.secret is None or source.key is None:
            return None
        value = ((self.secrets.get(source.secret) or {}).get("data") or {}).get(source.key)
        return _b64decode(value) if value else None

    def _password_secret(self) -> tuple[Obj, str]:
        """The Secret (and envFrom prefix) new hashFromEnv entries go to: ``dex-passwords`` if
        Dex loads it, else the envFrom Secret holding the existing hashes."""
        candidates = [(s, p) for s, p in self.env_from if s == PASSWORD_SECRET]
        for entry in self.entries:
            source = self.env.get(str(entry.get(HASH_FROM_ENV) or ""))
            if source is not None and source.secret is not None:
                candidates += [(s, p) for s, p in self.env_from if s == source.secret]
        for name, prefix in candidates:
            secret = self.secrets.get(name)
            if secret is not None:
                return secret, prefix
        raise KferryError(
            f"Dex in {self.namespace} reads password hashes from its environment "
            f"(hashFromEnv), but its Deployment loads no Secret {PASSWORD_SECRET} (envFrom) "
            "to put a new one in"
        )

    # -- planning

    @property
    def config_text(self) -> str:
        return str(self.configmap["data"][self.config_key])

    def _index_of(self, entry: Obj) -> int:
        return next(i for i, e in enumerate(self.entries) if e is entry)

    def _with_entries(self, entries: list[Obj], edited: str | None) -> tuple[Obj, str]:
        """The ConfigMap holding ``edited`` (the in-place edit) if it reads back as the
        configuration with ``entries``; else the configuration written back whole. Also a
        note for the change's detail ("" when edited in place)."""
        config = dict(self.config)
        config["staticPasswords"] = entries
        note = ""
        if edited is None or not _same_config(edited, config):
            edited = yaml.safe_dump(
                config, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16
            )
            note = REWRITTEN
        configmap = copy.deepcopy(self.configmap)
        configmap["data"][self.config_key] = edited
        return configmap, note

    def _secret_with(self, secret: Obj, key: str, value: str | None) -> Obj:
        updated = copy.deepcopy(secret)
        data = updated.setdefault("data", {}) or {}
        updated["data"] = data
        if value is None:
            data.pop(key, None)
        else:
            data[key] = base64.b64encode(value.encode()).decode()
        return updated

    def plan_add(self, email: str, password: str, username: str | None, reset: bool) -> DexChange:
        """The change that gives ``email`` this password. An existing entry with the same
        password is left alone; with another password it is an InputError unless ``reset``."""
        entries = [copy.deepcopy(e) for e in self.entries]
        existing = self.find(email)
        if existing is None:
            return self._plan_new(entries, email, password, username)
        index = self._index_of(existing)
        entry = entries[index]
        secret: Obj | None = None
        detail = ""
        if username is not None:
            entry["username"] = username
        if not matches(password, self.hash_of(existing)):
            if not reset:
                raise InputError(
                    f"{email} already has a Dex password, and not this one: "
                    "add --reset-password to replace it"
                )
            new_hash = hash_password(password)
            if existing.get(HASH) or not existing.get(HASH_FROM_ENV):
                entry[HASH] = new_hash
                entry.pop(HASH_FROM_ENV, None)
                detail = f"hash in {self.where}"
            else:
                var = str(existing[HASH_FROM_ENV])
                source = self.env.get(var)
                if source is not None and source.literal:
                    raise KferryError(
                        f"Dex's Deployment sets {var} itself (env value): cannot replace the hash"
                    )
                if source is not None and source.secret in self.secrets:
                    target, key = self.secrets[str(source.secret)], str(source.key)
                else:
                    target, prefix = self._password_secret()
                    if not var.startswith(prefix):
                        raise KferryError(f"{var} does not start with the envFrom prefix {prefix}")
                    key = var[len(prefix) :]
                secret = self._secret_with(target, key, new_hash)
                detail = f"{HASH_FROM_ENV} {var} in Secret {self.namespace}/{_name(target)}"
        if entry == existing and secret is None:
            return DexChange("unchanged", detail=self._describe(existing))
        configmap: Obj | None = None
        detail = detail or self._describe(entry)
        if entry != existing:
            changed = [(k, str(v)) for k, v in entry.items() if existing.get(k) != v]
            gone = [k for k in existing if k not in entry]
            text = DexConfigText(self.config_text).update(index, changed, gone)
            configmap, note = self._with_entries(entries, text)
            detail = f"{detail}; {note}" if note else detail
        return DexChange("updated", configmap, secret, detail)

    def _plan_new(
        self, entries: list[Obj], email: str, password: str, username: str | None
    ) -> DexChange:
        entry: Obj = {"email": email}
        secret: Obj | None = None
        new_hash = hash_password(password)
        if self.layout == HASH_FROM_ENV:
            target, prefix = self._password_secret()
            taken = set(self.env) | {str(e.get(HASH_FROM_ENV)) for e in self.entries}
            key = env_key_for(email, {t[len(prefix) :] for t in taken if t.startswith(prefix)})
            entry[HASH_FROM_ENV] = prefix + key
            secret = self._secret_with(target, key, new_hash)
        else:
            entry[HASH] = new_hash
        entry["username"] = username or email.split("@", 1)[0]
        entry["userID"] = user_id_for(email)
        entries.append(entry)
        text = DexConfigText(self.config_text).add([(k, str(v)) for k, v in entry.items()])
        configmap, note = self._with_entries(entries, text)
        detail = self._describe(entry) + (f"; {note}" if note else "")
        return DexChange("added", configmap, secret, detail)

    def plan_remove(self, email: str) -> DexChange:
        existing = self.find(email)
        if existing is None:
            return DexChange("absent")
        entries = [copy.deepcopy(e) for e in self.entries if e is not existing]
        secret: Obj | None = None
        var = existing.get(HASH_FROM_ENV)
        source = self.env.get(str(var)) if var else None
        still_used = any(e.get(HASH_FROM_ENV) == var for e in entries)
        if source is not None and source.secret in self.secrets and not still_used:
            secret = self._secret_with(self.secrets[str(source.secret)], str(source.key), None)
        text = DexConfigText(self.config_text).remove(self._index_of(existing))
        configmap, note = self._with_entries(entries, text)
        detail = self._describe(existing) + (f"; {note}" if note else "")
        return DexChange("removed", configmap, secret, detail)

    def _describe(self, entry: Obj) -> str:
        if entry.get(HASH):
            return f"hash in {self.where}"
        var = str(entry.get(HASH_FROM_ENV) or "")
        source = self.env.get(var)
        where = f" in Secret {self.namespace}/{source.secret}" if source and source.secret else ""
        return f"{HASH_FROM_ENV} {var}{where}"

    # -- writing

    def configmap_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps/{_name(self.configmap)}"

    def secret_path(self, secret: Obj) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{_name(secret)}"

    def deployment_path(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{DEPLOYMENT}"


def _same_config(text: str, config: Obj) -> bool:
    """Does ``text`` read back as ``config`` (an empty ``staticPasswords`` may be null)?"""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    if not isinstance(parsed, dict):
        return False
    if parsed.get("staticPasswords") is None and not config.get("staticPasswords"):
        parsed["staticPasswords"] = config.get("staticPasswords")
    return bool(parsed == config)


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])
