"""``users add``, ``users list``, ``users remove`` against a cluster.

add: every check (Profile name and owner, Dex layout, an existing entry's password) happens
before anything is written; then the Profile is created (if the user has none), the Dex Secret
and ConfigMap updated (if the entry is new or changes) and Dex restarted. If the Dex part fails
after this command created the Profile, what it wrote is put back and the Profile deleted.
Nothing changed -> nothing written, Dex not restarted.

remove: the Dex entry first (so a half-done removal locks the user out rather than leaving a
login without a Profile; rerunning finishes it), then every Profile the email owns, and the
namespace each owned (Kubeflow's garbage collection would take it; kferry does not wait for it).

Restart = the ``kubectl rollout restart`` annotation; the rollout is waited for only when the
cluster has nodes to run the new pod on (an API server alone has none, and nothing would
ever roll out).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kferry.errors import InputError, KferryError
from kferry.kube import Kube, KubeError
from kferry.users.dex import RESTARTED_AT, DexChange, DexInstall
from kferry.users.names import check_profile_name, profile_name_for
from kferry.users.profiles import Profiles, owner_of

Obj = dict[str, Any]

COMPLETE = "complete"
SKIPPED = "skipped"


@dataclass
class Restart:
    restarted: bool = False
    rollout: str | None = None  # complete | skipped | None (not restarted)
    note: str = ""


@dataclass
class AddResult:
    email: str
    profile: str
    api_version: str
    profile_created: bool
    dex: str  # added | updated | unchanged
    layout: str
    dex_detail: str
    restart: Restart

    @property
    def changed(self) -> bool:
        return self.profile_created or self.dex != "unchanged"

    def to_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "profile": self.profile,
            "namespace": self.profile,
            "apiVersion": self.api_version,
            "profileCreated": self.profile_created,
            "dex": self.dex,
            "layout": self.layout,
            "changed": self.changed,
            "restarted": self.restart.restarted,
            "rollout": self.restart.rollout,
        }


@dataclass
class RemoveResult:
    email: str
    profiles: list[str]
    namespaces: list[str]  # deleted with their Profile
    kept_namespaces: list[str]  # same name as a removed Profile, but not owned by it
    dex: str  # removed | absent
    restart: Restart

    def to_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "profiles": self.profiles,
            "namespaces": self.namespaces,
            "dex": self.dex,
            "restarted": self.restart.restarted,
            "rollout": self.restart.rollout,
        }


@dataclass
class UserRow:
    email: str
    profile: str | None
    namespace: str | None
    dex: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "profile": self.profile,
            "namespace": self.namespace,
            "dex": self.dex,
        }


@dataclass
class Listing:
    rows: list[UserRow]
    warnings: list[str] = field(default_factory=list)


# -- add


def _choose_profile(profiles: Profiles, email: str, requested: str | None) -> tuple[str, bool]:
    """(Profile name, whether to create it)."""
    if requested is not None:
        name = check_profile_name(requested)
    else:
        owned = profiles.owned_by(email)
        if owned:
            return str(owned[0]["metadata"]["name"]), False
        name = profile_name_for(email)
    existing = profiles.get(name)
    if existing is None:
        return name, True
    owner = owner_of(existing)
    if owner != email:
        raise InputError(
            f"Profile {name} exists and belongs to {owner or 'no user'}: "
            "choose another name with --profile"
        )
    return name, False


def add_user(
    kube: Kube,
    email: str,
    password: str,
    *,
    profile: str | None = None,
    username: str | None = None,
    reset_password: bool = False,
    dex_namespace: str,
    timeout: float,
) -> AddResult:
    profiles = Profiles.discover(kube)
    dex = DexInstall.read(kube, dex_namespace)
    name, create = _choose_profile(profiles, email, profile)
    change = dex.plan_add(email, password, username, reset_password)

    if create:
        profiles.create(name, email)
    written: list[tuple[str, Obj]] = []
    try:
        _write(kube, dex, change, written, secret_first=True)
        restart = Restart(restarted=_restart(kube, dex)) if change.changed else Restart()
    except BaseException as exc:
        undone = _rollback(kube, written, profiles if create else None, name)
        if isinstance(exc, KferryError):
            raise KferryError(f"updating Dex failed: {exc}; {undone}") from None
        raise
    if restart.restarted:
        _wait(kube, dex, restart, timeout)
    return AddResult(
        email, name, profiles.api_version, create, change.action, dex.layout, change.detail, restart
    )


def _write(
    kube: Kube,
    dex: DexInstall,
    change: DexChange,
    written: list[tuple[str, Obj]],
    *,
    secret_first: bool,
) -> None:
    """PUT the changed Secret and ConfigMap (resourceVersion from the read: a concurrent
    change is a conflict, not overwritten); ``written`` gets (path, original) of each."""
    steps: list[tuple[str, Obj, Obj]] = []
    if change.secret is not None:
        original = dex.secrets[str(change.secret["metadata"]["name"])]
        steps.append((dex.secret_path(change.secret), change.secret, original))
    if change.configmap is not None:
        step = (dex.configmap_path(), change.configmap, dex.configmap)
        steps.insert(len(steps) if secret_first else 0, step)
    for path, new, original in steps:
        kube.request("PUT", path, body=new)
        written.append((path, original))


def _rollback(
    kube: Kube, written: list[tuple[str, Obj]], profiles: Profiles | None, name: str
) -> str:
    """Put back what was written (newest first) and delete the Profile made; say what was
    undone, and what could not be."""
    done: list[str] = []
    failed: list[str] = []
    for path, original in reversed(written):
        what = f"{original['kind']} {original['metadata'].get('namespace')}/"
        what += str(original["metadata"]["name"])
        try:
            current = kube.get(path)
            restored = dict(original)
            restored["metadata"] = dict(original["metadata"])
            if current is not None:
                restored["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            kube.request("PUT", path, body=restored)
            done.append(f"{what} restored")
        except KferryError as exc:
            failed.append(f"could not restore {what}: {exc}")
    if profiles is not None:
        try:
            profiles.delete(name)
            done.append(f"Profile {name} deleted")
        except KferryError as exc:
            failed.append(f"could not delete Profile {name}: {exc}")
    text = "rolled back: " + (", ".join(done) if done else "nothing had been written")
    if failed:
        text += "; ROLLBACK INCOMPLETE: " + "; ".join(failed)
    return text


# -- restart


def _restart(kube: Kube, dex: DexInstall) -> bool:
    """``kubectl rollout restart``: a new restartedAt annotation on the pod template."""
    deployment = kube.get(dex.deployment_path())
    if deployment is None:
        raise KferryError(f"Deployment {dex.namespace}/dex is gone")
    template = deployment.get("spec", {}).get("template", {})
    previous = (template.get("metadata") or {}).get("annotations", {}).get(RESTARTED_AT)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    while now == previous:  # a restart this same second: the next value
        time.sleep(0.2)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    kube.request(
        "PATCH",
        dex.deployment_path(),
        body=body,
        content_type="application/strategic-merge-patch+json",
    )
    return True


def cluster_has_nodes(kube: Kube) -> bool | None:
    """Whether any Node is registered; None if this user may not list them."""
    try:
        nodes = kube.get("/api/v1/nodes", limit="1") or {}
    except KubeError as exc:
        if exc.status in (401, 403):
            return None
        raise
    return bool(nodes.get("items"))


def _wait(kube: Kube, dex: DexInstall, restart: Restart, timeout: float) -> None:
    nodes = cluster_has_nodes(kube)
    if not nodes:
        restart.rollout = SKIPPED
        restart.note = (
            "the cluster has no nodes to run Dex on"
            if nodes is False
            else "this user may not list nodes, so kferry cannot tell whether pods run"
        )
        return
    wait_rollout(kube, dex.deployment_path(), timeout)
    restart.rollout = COMPLETE


def rollout_done(deployment: Obj) -> tuple[bool, str]:
    """``kubectl rollout status`` for a Deployment: (done, what it is waiting for)."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = int(deployment.get("metadata", {}).get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return False, "the deployment controller has not seen the change yet"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise KferryError(f"Dex's rollout failed: {cond.get('message', '')}")
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    if updated < wanted:
        return False, f"{updated} of {wanted} new pods created"
    if int(status.get("replicas") or 0) > updated:
        return False, "old pods still terminating"
    if int(status.get("availableReplicas") or 0) < updated:
        return False, f"{status.get('availableReplicas') or 0} of {updated} new pods available"
    return True, ""


def wait_rollout(kube: Kube, path: str, timeout: float, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        deployment = kube.get(path)
        if deployment is None:
            raise KferryError(f"{path}: the Deployment disappeared during its rollout")
        done, waiting = rollout_done(deployment)
        if done:
            return
        if time.monotonic() >= deadline:
            raise KferryError(
                f"Dex was restarted with the new configuration, but its rollout did not finish "
                f"within {timeout:g} s ({waiting}): check the dex pods"
            )
        time.sleep(interval)


# -- list


def list_users(kube: Kube, *, dex_namespace: str) -> Listing:
    profiles = Profiles.discover(kube)
    warnings: list[str] = []
    dex_emails: list[str] = []
    try:
        dex_emails = DexInstall.read(kube, dex_namespace, need_deployment=False).emails
    except KferryError as exc:
        if isinstance(exc, KubeError) and exc.status not in (403, 404):
            raise
        warnings.append(f"Dex: {exc}; every user is listed without a Dex entry")
    lowered = {e.lower() for e in dex_emails}
    rows: list[UserRow] = []
    owners: set[str] = set()
    for profile in profiles.all():
        owner = owner_of(profile)
        if owner is None:
            continue
        name = str(profile["metadata"]["name"])
        owners.add(owner.lower())
        rows.append(UserRow(owner, name, name, owner.lower() in lowered))
    rows += [UserRow(e, None, None, True) for e in dex_emails if e.lower() not in owners]
    rows.sort(key=lambda r: (r.email.lower(), r.profile or ""))
    return Listing(rows, warnings)


# -- remove


def remove_user(kube: Kube, email: str, *, dex_namespace: str, timeout: float) -> RemoveResult:
    profiles = Profiles.discover(kube)
    dex = DexInstall.read(kube, dex_namespace)
    owned = profiles.owned_by(email)
    change = dex.plan_remove(email)
    if not owned and not change.changed:
        raise KferryError(
            f"no user {email}: no Profile is owned by it and Dex in {dex_namespace} has no "
            "static password for it"
        )
    written: list[tuple[str, Obj]] = []
    try:
        _write(kube, dex, change, written, secret_first=False)
    except BaseException as exc:
        undone = _rollback(kube, written, None, "")
        if isinstance(exc, KferryError):
            raise KferryError(f"updating Dex failed: {exc}; {undone}") from None
        raise
    restart = Restart(restarted=_restart(kube, dex)) if change.changed else Restart()
    removed: list[str] = []
    namespaces: list[str] = []
    kept: list[str] = []
    for profile in owned:
        name = str(profile["metadata"]["name"])
        if profiles.delete(name):
            removed.append(name)
        gone = _delete_owned_namespace(kube, profile, email)
        if gone is True:
            namespaces.append(name)
        elif gone is False:
            kept.append(name)
    if restart.restarted:
        _wait(kube, dex, restart, timeout)
    return RemoveResult(email, removed, namespaces, kept, change.action, restart)


def _delete_owned_namespace(kube: Kube, profile: Obj, email: str) -> bool | None:
    """Delete the namespace named after ``profile`` if it belongs to it (an owner reference to
    the Profile, or Kubeflow's ``owner`` annotation naming the email). None: no such namespace;
    False: one that is not the Profile's, left alone."""
    name = str(profile["metadata"]["name"])
    namespace = kube.get(f"/api/v1/namespaces/{name}")
    if namespace is None:
        return None
    meta = namespace.get("metadata") or {}
    uid = profile["metadata"].get("uid")
    owned = any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or [])
    owned = owned or (meta.get("annotations") or {}).get("owner") == email
    if not owned:
        return False
    try:
        kube.request("DELETE", f"/api/v1/namespaces/{name}", ok=(200, 202))
    except KubeError as exc:
        if exc.status != 404:
            raise
    return True
