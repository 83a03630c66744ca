"""`kferry users` against a real API server and a real Dex.

Each cluster test installs the Profile CRD of a shipped Kubeflow render and that render's Dex
objects (ConfigMap ``dex``, Secrets ``dex-oidc-client`` and, from 1.9 on, ``dex-passwords``,
Deployment ``dex``) into its own namespace, which ``--dex-namespace`` names (``auth`` in a real
installation). v1.4.1 has the inline ``hash`` layout, v1.9.1 and 26.03 ``hashFromEnv``. Then
Dex (v2.41.1, built from its Go module by ``scripts/peers dex``) is started from the
configuration and Secrets kferry left in the cluster, and must accept the password.
"""

from __future__ import annotations

import base64
import copy
import difflib
import gzip
import io
import json
import os
import pty
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from kferry.errors import InputError
from kferry.users import profile_name_for, read_password, rollout_done, user_id_for
from kferry.users.names import check_email, check_profile_name, env_key_for
from kferry.users.profiles import choose_version
from tests.conftest import Result, release_path, run_kferry
from tests.support.cluster import Cluster, ClusterError
from tests.support.cluster_fixtures import Kube
from tests.support.dex import kubelet_env, running_dex

Obj = dict[str, Any]

LAYOUT = {"v1.4.1": "hash", "v1.9.1": "hashFromEnv", "26.03": "hashFromEnv"}
ENV_RELEASES = ["v1.9.1", "26.03"]
DEFAULT_USER, DEFAULT_PASSWORD = "user@example.com", "12341234"  # what every render ships
PROFILES = "/apis/kubeflow.org/v1/profiles"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


# --------------------------------------------------------------------------------------------
# The renders' objects


@cache
def render(release: str) -> tuple[Obj, ...]:
    text = gzip.decompress(release_path(release).read_bytes()).decode()
    return tuple(d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d)


def corpus_object(release: str, kind: str, name: str, namespace: str | None = None) -> Obj:
    for doc in render(release):
        meta = doc["metadata"]
        if doc["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return copy.deepcopy(doc)
    raise KeyError(f"{release}: no {kind} {namespace}/{name}")


def dex_objects(release: str) -> list[Obj]:
    """Dex's objects in the render's ``auth`` namespace (what ``kferry users`` reads)."""
    return [
        copy.deepcopy(d)
        for d in render(release)
        if d["metadata"].get("namespace") == "auth" and d["kind"] in ("ConfigMap", "Secret")
    ] + [corpus_object(release, "Deployment", "dex", "auth")]


# --------------------------------------------------------------------------------------------
# A Kubeflow-shaped cluster for one test


@dataclass
class Site:
    """The test's cluster with one release's Profile CRD and Dex objects in its namespace."""

    kube: Kube
    release: str
    token: str

    @property
    def cluster(self) -> Cluster:
        return self.kube.cluster

    @property
    def ns(self) -> str:
        return self.kube.namespace

    def email(self, who: str = "alice") -> str:
        return f"{who}.{self.token}@example.com"

    def run(self, *args: str, password: str | None = None, dex: bool = True) -> Result:
        extra = ("--dex-namespace", self.ns) if dex else ()
        stdin = None if password is None else f"{password}\n".encode()
        res = run_kferry(
            "users", *args, *extra, stdin=stdin, env={"KUBECONFIG": str(self.kube.kubeconfig)}
        )
        if password:
            assert password not in res.out and password not in res.err
        return res

    def add(self, email: str, password: str, *args: str) -> Result:
        return self.run("add", email, "--password-stdin", *args, password=password)

    def add_json(self, email: str, password: str, *args: str) -> Obj:
        res = self.add(email, password, "-o", "json", *args)
        assert res.code == 0, res.err
        out: Obj = json.loads(res.out)
        return out

    # -- reading what is stored

    def configmap(self) -> Obj:
        return self.cluster.get(self.kube.ns_path("configmaps", "dex"))

    def config_text(self) -> str:
        text: str = self.configmap()["data"]["config.yaml"]
        return text

    def config(self) -> Obj:
        config: Obj = yaml.safe_load(self.config_text())
        return config

    def entry(self, email: str) -> Obj | None:
        for entry in self.config().get("staticPasswords") or []:
            if entry["email"].lower() == email.lower():
                return dict(entry)
        return None

    def secret(self, name: str = "dex-passwords") -> Obj | None:
        path = self.kube.ns_path("secrets", name)
        return self.cluster.get(path) if self.cluster.exists(path) else None

    def deployment(self) -> Obj:
        return self.cluster.get(self.kube.ns_path("deployments", "dex", "apps/v1"))

    def restarted_at(self) -> str | None:
        annotations = self.deployment()["spec"]["template"]["metadata"].get("annotations") or {}
        return annotations.get("kubectl.kubernetes.io/restartedAt")

    def env(self) -> dict[str, str]:
        """The dex container's environment as the kubelet would make it."""
        return kubelet_env(self.deployment(), self.secret)

    def stored_hash(self, email: str) -> str:
        entry = self.entry(email)
        assert entry is not None, f"no Dex entry for {email}"
        if entry.get("hash"):
            return str(entry["hash"])
        return self.env()[entry["hashFromEnv"]]

    def profile(self, name: str) -> Obj | None:
        path = f"{PROFILES}/{name}"
        return self.cluster.get(path) if self.cluster.exists(path) else None

    def versions(self) -> dict[str, str]:
        """What changes when kferry writes: the resourceVersion of the ConfigMap and the
        Secret, the generation of the Deployment (its status, which the deployment controller
        writes when it runs, is not kferry's)."""
        versions = {"configmap": self.configmap()["metadata"]["resourceVersion"]}
        secret = self.secret()
        if secret is not None:
            versions["secret"] = secret["metadata"]["resourceVersion"]
        versions["deployment"] = str(self.deployment()["metadata"]["generation"])
        return versions


def install(kube: Kube, release: str) -> Site:
    kube.cluster.apply(corpus_object(release, "CustomResourceDefinition", "profiles.kubeflow.org"))
    for obj in dex_objects(release):
        obj["metadata"]["namespace"] = kube.namespace
        kube.apply(obj)
    return Site(kube, release, secrets.token_hex(3))


def delete_profiles(cluster: Cluster, token: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:  # a CRD just recreated answers 429 while its storage initializes
            profiles = cluster.get(PROFILES).get("items") or []
            break
        except ClusterError as exc:
            if exc.status not in (429, 503) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    for profile in profiles:
        if token in profile["metadata"]["name"]:
            cluster.delete(f"{PROFILES}/{profile['metadata']['name']}")


@pytest.fixture
def site_factory(kube: Kube):
    made: list[Site] = []

    def make(release: str) -> Site:
        site = install(kube, release)
        made.append(site)
        return site

    yield make
    for site in made:
        delete_profiles(kube.cluster, site.token)


@pytest.fixture(params=list(LAYOUT))
def site(request: pytest.FixtureRequest, site_factory) -> Site:
    made: Site = site_factory(request.param)
    return made


@pytest.fixture(params=ENV_RELEASES)
def env_site(request: pytest.FixtureRequest, site_factory) -> Site:
    made: Site = site_factory(request.param)
    return made


def is_bcrypt_of(password: str, hashed: str) -> bool:
    return hashed.startswith("$2b$12$") and bcrypt.checkpw(password.encode(), hashed.encode())


# --------------------------------------------------------------------------------------------
# add


@pytest.mark.cluster
def test_add_creates_the_profile_and_the_dex_entry(site: Site) -> None:
    email, password = site.email(), "correct horse battery"
    before = site.config()
    out = site.add_json(email, password)
    name = f"alice-{site.token}-example-com"
    assert out == {
        "email": email,
        "profile": name,
        "namespace": name,
        "apiVersion": "kubeflow.org/v1",
        "profileCreated": True,
        "dex": "added",
        "layout": LAYOUT[site.release],
        "changed": True,
        "restarted": True,
        "rollout": "skipped",  # an API server alone has no nodes: nothing would roll out
    }
    profile = site.profile(name)
    assert profile is not None
    assert profile["apiVersion"] == "kubeflow.org/v1"
    assert profile["spec"]["owner"] == {"kind": "User", "name": email}

    entry = site.entry(email)
    assert entry is not None
    assert entry["username"] == f"alice.{site.token}"
    assert entry["userID"] == user_id_for(email)
    assert is_bcrypt_of(password, site.stored_hash(email))
    if LAYOUT[site.release] == "hash":
        assert set(entry) == {"email", "hash", "username", "userID"}
    else:
        key = f"DEX_ALICE_{site.token.upper()}_EXAMPLE_COM_PASSWORD"
        assert entry == {**entry, "hashFromEnv": key}
        assert "hash" not in entry
        stored = site.secret()
        assert stored is not None
        assert set(stored["data"]) == {"DEX_USER_PASSWORD", key}

    # every other setting and the shipped user are kept
    after = site.config()
    assert {k: v for k, v in after.items() if k != "staticPasswords"} == {
        k: v for k, v in before.items() if k != "staticPasswords"
    }
    assert after["staticPasswords"][:-1] == before["staticPasswords"]
    assert site.restarted_at() is not None
    # the password is stored nowhere in clear, not even base64-encoded
    text = json.dumps([site.configmap(), site.secret()])
    assert password not in text and base64.b64encode(password.encode()).decode() not in text


@pytest.mark.cluster
def test_add_table_output_and_options(site_factory) -> None:
    site = site_factory("26.03")
    email = site.email("Bob")
    res = site.add(email, "pw-for-bob", "--profile", f"team-{site.token}", "--username", "bobby")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0] == (
        f"Profile team-{site.token} (kubeflow.org/v1): created, owner {email}; "
        f"namespace team-{site.token}"
    )
    assert lines[1].startswith("Dex static password: added (hashFromEnv DEX_BOB_")
    assert (
        lines[2]
        == "Dex: restarted; not waiting for the rollout: the cluster has no nodes to run Dex on"
    )
    profile = site.profile(f"team-{site.token}")
    assert profile is not None and profile["spec"]["owner"]["name"] == email
    entry = site.entry(email)
    assert entry is not None and entry["username"] == "bobby"


@pytest.mark.cluster
def test_readd_with_the_same_password_changes_nothing(site: Site) -> None:
    email = site.email()
    site.add_json(email, "same-password")
    versions = site.versions()
    profile_version = site.profile(profile_name_for(email))["metadata"]["resourceVersion"]  # type: ignore[index]

    out = site.add_json(email, "same-password")
    assert out["changed"] is False
    assert (out["profileCreated"], out["dex"], out["restarted"], out["rollout"]) == (
        False, "unchanged", False, None,
    )  # fmt: skip
    assert site.versions() == versions
    assert site.profile(profile_name_for(email))["metadata"]["resourceVersion"] == profile_version  # type: ignore[index]
    # --reset-password with the password it already has: nothing to replace either
    assert site.add_json(email, "same-password", "--reset-password")["changed"] is False
    assert site.versions() == versions


@pytest.mark.cluster
def test_other_password_needs_reset_password(site: Site) -> None:
    email = site.email()
    site.add_json(email, "first-password")
    versions = site.versions()
    restarted = site.restarted_at()

    res = site.add(email, "second-password")
    assert res.code == 2
    assert "already has a Dex password" in res.err and "--reset-password" in res.err
    assert site.versions() == versions

    out = site.add_json(email, "second-password", "--reset-password")
    assert (out["dex"], out["profileCreated"], out["restarted"]) == ("updated", False, True)
    assert is_bcrypt_of("second-password", site.stored_hash(email))
    assert not bcrypt.checkpw(b"first-password", site.stored_hash(email).encode())
    assert site.restarted_at() != restarted
    entry = site.entry(email)
    assert entry is not None and entry["userID"] == user_id_for(email)
    if LAYOUT[site.release] == "hashFromEnv":  # the hash moved in its Secret key, not inline
        assert "hash" not in entry


@pytest.mark.cluster
def test_existing_user_keeps_their_profile_and_entry(site: Site) -> None:
    """The shipped user (Dex entry, password 12341234) gets a Profile; nothing else moves."""
    versions = site.versions()
    site.cluster.apply(corpus_object(site.release, "Profile", "kubeflow-user-example-com"))
    try:
        out = site.add_json(DEFAULT_USER, DEFAULT_PASSWORD)
        assert (out["profile"], out["profileCreated"], out["dex"]) == (
            "kubeflow-user-example-com", False, "unchanged",
        )  # fmt: skip
        assert site.versions() == versions
    finally:
        site.cluster.delete(f"{PROFILES}/kubeflow-user-example-com")


@pytest.mark.cluster
def test_profile_owned_by_someone_else_is_refused(site_factory) -> None:
    site = site_factory("v1.9.1")
    site.add_json(site.email("carol"), "pw1")
    versions = site.versions()
    res = site.add(site.email("dave"), "pw2", "--profile", profile_name_for(site.email("carol")))
    assert res.code == 2 and "belongs to" in res.err and "--profile" in res.err
    assert site.versions() == versions
    assert site.entry(site.email("dave")) is None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("add", "not-an-email", "--password-stdin"), b"pw\n", "not an email address"),
        (("add", "a@example.com", "--password-stdin"), b"\n", "the password is empty"),
        (("add", "a@example.com", "--password-stdin"), b"a\nb\n", "more than one line"),
        (("add", "a@example.com", "--password-stdin"), b"x" * 73, "longer than 72 bytes"),
        (("add", "a@example.com"), b"", "--password-stdin"),  # no terminal to prompt on
        (("add", "a@example.com", "--profile", "Bad_Name", "--password-stdin"), b"pw", "DNS"),
        (("remove", "nope"), b"", "not an email address"),
        (("check", "nope", "--url", "http://127.0.0.1:1", "--password-stdin"), b"pw", "email"),
        (("check", "a@example.com", "--url", "ftp://x", "--password-stdin"), b"pw", "--url"),
        (
            ("check", "a@example.com", "--url", "http://127.0.0.1:1", "--password-stdin"),
            "é".encode() * 37,
            "74 bytes long in UTF-8, longer than 72 bytes",
        ),
        (("check", "a@example.com", "--url", "http://127.0.0.1:1"), b"", "--password-stdin"),
    ],
)
def test_bad_input_is_exit_code_2_before_any_cluster_call(
    args: tuple[str, ...], stdin: bytes, message: str, tmp_path: Path
) -> None:
    # a kubeconfig naming nowhere: input errors come first
    res = run_kferry("users", *args, stdin=stdin, env={"KUBECONFIG": str(tmp_path / "none")})
    assert res.code == 2, res.err
    assert message in res.err
    assert res.out == ""


@pytest.mark.cluster
def test_password_prompt_does_not_echo(site_factory) -> None:
    site = site_factory("v1.4.1")
    email, password = site.email("erin"), "typed-at-a-terminal"
    argv = [sys.executable, "-m", "kferry", "users", "add", email, "--dex-namespace", site.ns]
    argv += ["-o", "json"]
    assert password not in " ".join(argv)
    env = {**os.environ, "KUBECONFIG": str(site.kube.kubeconfig)}
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs at once
        os.execvpe(argv[0], argv, env)
    transcript = io.BytesIO()
    answered = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            transcript.write(chunk)
            seen = transcript.getvalue()
            prompts = seen.count(b"Password for") + seen.count(b"Repeat for confirmation")
            if prompts > answered:
                os.write(fd, password.encode() + b"\n")
                answered += 1
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = transcript.getvalue().decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert answered == 2  # password, then its confirmation
    assert password not in text
    assert is_bcrypt_of(password, site.stored_hash(email))


@pytest.mark.cluster
def test_password_is_in_no_command_line(site_factory) -> None:
    """While `users add` runs, no process on the machine has the password in its argv."""
    site = site_factory("26.03")
    password = f"argv-canary-{secrets.token_hex(8)}"
    argv = [sys.executable, "-m", "kferry", "users", "add", site.email(), "--password-stdin"]
    argv += ["--dex-namespace", site.ns]
    env = {**os.environ, "KUBECONFIG": str(site.kube.kubeconfig)}
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None
    proc.stdin.write(password.encode() + b"\n")
    proc.stdin.close()
    seen: list[str] = []
    while proc.poll() is None:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if password.encode() in cmdline.read_bytes():
                    seen.append(str(cmdline))
            except OSError:
                pass
        time.sleep(0.02)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()  # a few lines: the pipes never filled
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 0, err
    assert seen == []
    assert password.encode() not in out + err
    assert is_bcrypt_of(password, site.stored_hash(site.email()))


# --------------------------------------------------------------------------------------------
# rollback


@pytest.mark.parametrize("release", ["v1.4.1", "26.03"])
@pytest.mark.cluster
def test_dex_update_failure_rolls_back_the_profile_and_the_secret(
    site_factory, release: str
) -> None:
    site = site_factory(release)
    # The API server refuses any change to an immutable ConfigMap: the Dex update fails at
    # its last write (after the Secret, in the hashFromEnv layout).
    site.cluster.patch(site.kube.ns_path("configmaps", "dex"), {"immutable": True})
    secret_before = site.secret()
    configmap_before = site.configmap()
    email = site.email()

    res = site.add(email, "never-stored")
    assert res.code == 1
    assert "updating Dex failed" in res.err and "immutable" in res.err
    assert f"Profile {profile_name_for(email)} deleted" in res.err
    assert "ROLLBACK INCOMPLETE" not in res.err
    assert site.profile(profile_name_for(email)) is None
    assert site.configmap()["data"] == configmap_before["data"]
    assert site.restarted_at() is None
    if secret_before is not None:
        assert f"Secret {site.ns}/dex-passwords restored" in res.err
        after = site.secret()
        assert after is not None and after["data"] == secret_before["data"]


@pytest.mark.cluster
def test_rollback_keeps_a_profile_it_did_not_create(site_factory) -> None:
    site = site_factory("v1.9.1")
    email = site.email()
    name = profile_name_for(email)
    site.cluster.apply(
        {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": name},
         "spec": {"owner": {"kind": "User", "name": email}}}
    )  # fmt: skip
    site.cluster.patch(site.kube.ns_path("configmaps", "dex"), {"immutable": True})
    res = site.add(email, "pw")
    assert res.code == 1 and "updating Dex failed" in res.err
    assert "Profile" not in res.err.split("rolled back:")[1]
    assert site.profile(name) is not None


# --------------------------------------------------------------------------------------------
# list and remove


@pytest.mark.cluster
def test_list_table_and_json(site_factory) -> None:
    site = site_factory("26.03")
    alice, bob, carol = site.email("alice"), site.email("bob"), site.email("carol")
    site.add_json(alice, "pw-a")
    site.add_json(bob, "pw-b", "--profile", f"bobs-{site.token}")
    # a Profile whose owner has no Dex entry (e.g. a user of another identity provider)
    site.cluster.apply(
        {"apiVersion": "kubeflow.org/v1beta1", "kind": "Profile",
         "metadata": {"name": f"carol-{site.token}"},
         "spec": {"owner": {"kind": "User", "name": carol}}}
    )  # fmt: skip

    res = site.run("list", "-o", "json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)
    ours = [r for r in rows if site.token in r["email"] or r["email"] == DEFAULT_USER]
    assert ours == sorted(
        [
            {"email": alice, "profile": profile_name_for(alice),
             "namespace": profile_name_for(alice), "dex": True},
            {"email": bob, "profile": f"bobs-{site.token}", "namespace": f"bobs-{site.token}",
             "dex": True},
            {"email": carol, "profile": f"carol-{site.token}",
             "namespace": f"carol-{site.token}", "dex": False},
            {"email": DEFAULT_USER, "profile": None, "namespace": None, "dex": True},
        ],
        key=lambda r: r["email"].lower(),
    )  # fmt: skip
    for row in rows:
        assert set(row) == {"email", "profile", "namespace", "dex"}

    table = site.run("list")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["EMAIL", "PROFILE", "NAMESPACE", "DEX"]
    assert [alice, profile_name_for(alice), profile_name_for(alice), "yes"] in [
        line.split() for line in lines
    ]
    assert [carol, f"carol-{site.token}", f"carol-{site.token}", "no"] in [
        line.split() for line in lines
    ]
    assert [DEFAULT_USER, "-", "-", "yes"] in [line.split() for line in lines]


@pytest.mark.cluster
def test_list_without_dex_warns(site_factory) -> None:
    site = site_factory("v1.9.1")
    site.add_json(site.email(), "pw")
    res = run_kferry(
        "users", "list", "-o", "json", "--dex-namespace", f"nowhere-{site.token}",
        env={"KUBECONFIG": str(site.kube.kubeconfig)},
    )  # fmt: skip
    assert res.code == 0, res.err
    assert "warning" in res.err and "no ConfigMap" in res.err
    row = next(r for r in json.loads(res.out) if r["email"] == site.email())
    assert row["dex"] is False


@pytest.mark.cluster
def test_remove_deletes_profile_namespace_and_dex_entry(site: Site) -> None:
    email = site.email()
    name = profile_name_for(email)
    site.add_json(email, "pw-to-remove")
    keep = site.email("keep")
    site.add_json(keep, "pw-kept")
    # what Kubeflow's profile controller makes: the namespace, owned by the Profile
    profile = site.profile(name)
    assert profile is not None
    site.cluster.create_namespace(name)
    site.cluster.patch(
        f"/api/v1/namespaces/{name}",
        {"metadata": {"annotations": {"owner": email}, "ownerReferences": [
            {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "name": name,
             "uid": profile["metadata"]["uid"], "controller": True}]}},
    )  # fmt: skip
    restarted = site.restarted_at()
    var = (site.entry(email) or {}).get("hashFromEnv")

    res = site.run("remove", email, "-o", "json")
    assert res.code == 0, res.err
    assert json.loads(res.out) == {
        "email": email,
        "profiles": [name],
        "namespaces": [name],
        "dex": "removed",
        "restarted": True,
        "rollout": "skipped",
    }
    assert site.profile(name) is None
    ns = site.cluster.get(f"/api/v1/namespaces/{name}") if site.cluster.exists(
        f"/api/v1/namespaces/{name}") else None  # fmt: skip
    assert ns is None or ns["metadata"].get("deletionTimestamp")  # gone, or going
    assert site.entry(email) is None
    if var:
        assert var not in site.env()
    assert site.restarted_at() != restarted
    # the others are untouched
    assert is_bcrypt_of("pw-kept", site.stored_hash(keep))
    assert bcrypt.checkpw(DEFAULT_PASSWORD.encode(), site.stored_hash(DEFAULT_USER).encode())

    again = site.run("remove", email)
    assert again.code == 1 and f"no user {email}" in again.err


@pytest.mark.cluster
def test_config_yaml_keeps_every_byte_outside_the_changed_entry(site: Site) -> None:
    """The render's config.yaml (comments, static clients, quoting) survives add and remove."""
    original = site.config_text()
    assert "# https://github.com/dexidp/dex/pull/1664" in original
    alice, bob = site.email("alice"), site.email("bob")
    site.add_json(alice, "alice-password")
    site.add_json(bob, "bob-password")
    two = site.config_text()
    ops = difflib.SequenceMatcher(None, original.splitlines(), two.splitlines()).get_opcodes()
    assert {op[0] for op in ops} == {"equal", "insert"} and two.count("- email: ") == 3
    assert site.run("remove", alice, "-o", "json").code == 0
    assert site.run("remove", bob, "-o", "json").code == 0
    assert site.config_text() == original
    if site.release == "v1.4.1":  # the inline hash, replaced where it stands
        out = site.add_json(DEFAULT_USER, "a-new-one", "--reset-password")
        assert out["dex"] == "updated"
        changed = site.config_text()
        assert is_bcrypt_of("a-new-one", site.stored_hash(DEFAULT_USER))
        assert changed.replace(site.stored_hash(DEFAULT_USER), "") == original.replace(
            yaml.safe_load(original)["staticPasswords"][0]["hash"], ""
        )
        assert "# FIXME: Use hashFromEnv instead" in changed


@pytest.mark.cluster
def test_remove_leaves_a_namespace_the_profile_does_not_own(site_factory) -> None:
    site = site_factory("v1.4.1")
    email = site.email()
    name = profile_name_for(email)
    site.add_json(email, "pw")
    site.cluster.create_namespace(name)
    try:
        res = site.run("remove", email)
        assert res.code == 0, res.err
        assert f"namespace {name} is not owned by the Profile" in res.err
        assert not site.cluster.get(f"/api/v1/namespaces/{name}")["metadata"].get(
            "deletionTimestamp"
        )
    finally:
        site.cluster.delete(f"/api/v1/namespaces/{name}")


@pytest.mark.cluster
def test_profile_version_follows_what_the_cluster_serves(site_factory) -> None:
    """No Profile CRD: a clear error, nothing written. One that serves only v1beta1 (as
    Kubeflow 1.3's did): Profiles in v1beta1."""
    site = site_factory("v1.4.1")
    crd = corpus_object("v1.4.1", "CustomResourceDefinition", "profiles.kubeflow.org")
    only_beta = copy.deepcopy(crd)
    only_beta["spec"]["versions"] = [
        v for v in only_beta["spec"]["versions"] if v["name"] == "v1beta1"
    ]
    only_beta["spec"]["versions"][0]["storage"] = True
    crd_path = f"{CRDS}/{crd['metadata']['name']}"
    site.cluster.delete(crd_path)
    site.cluster.wait_gone(crd_path)
    try:
        versions = site.versions()
        res = site.add(site.email(), "pw")
        assert res.code == 1
        assert "the cluster serves no Profile kind (kubeflow.org)" in res.err
        assert site.versions() == versions
        assert site.run("list").code == 1

        site.cluster.apply(only_beta)
        out = site.add_json(site.email(), "pw")
        assert out["apiVersion"] == "kubeflow.org/v1beta1"
        got = site.cluster.get(f"/apis/kubeflow.org/v1beta1/profiles/{out['profile']}")
        assert got["spec"]["owner"]["name"] == site.email()
        rows = json.loads(site.run("list", "-o", "json").out)
        assert {"email": site.email(), "profile": out["profile"], "namespace": out["profile"],
                "dex": True} in rows  # fmt: skip
        site.cluster.delete(f"/apis/kubeflow.org/v1beta1/profiles/{out['profile']}")
    finally:
        site.cluster.delete(crd_path)
        site.cluster.wait_gone(crd_path)
        site.cluster.apply(crd)


# --------------------------------------------------------------------------------------------
# restart and rollout


@pytest.mark.cluster
def test_rollout_is_waited_for_where_the_cluster_has_nodes(site_factory) -> None:
    site = site_factory("v1.9.1")
    site.cluster.patch(
        site.kube.ns_path("deployments", "dex", "apps/v1"), {"spec": {"replicas": 0}}
    )
    node = f"kferry-fake-node-{site.token}"
    site.cluster.post(
        "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
    )
    stop = threading.Event()

    def deployment_controller() -> None:
        """What kube-controller-manager does for zero replicas, when it is not running."""
        path = site.kube.ns_path("deployments", "dex", "apps/v1")
        while not stop.wait(0.2):
            d = site.cluster.get(path)
            annotations = d["spec"]["template"]["metadata"].get("annotations") or {}
            if "kubectl.kubernetes.io/restartedAt" in annotations:
                site.cluster.write_status(path, {
                    "observedGeneration": d["metadata"]["generation"], "replicas": 0,
                    "updatedReplicas": 0, "availableReplicas": 0, "readyReplicas": 0})  # fmt: skip
                return

    helper = None
    if not site.cluster.has_controller_manager:
        helper = threading.Thread(target=deployment_controller, daemon=True)
        helper.start()
    try:
        out = site.add_json(site.email(), "pw", "--timeout", "60s")
        assert (out["restarted"], out["rollout"]) == (True, "complete")
    finally:
        stop.set()
        if helper is not None:
            helper.join(10)
        site.cluster.delete(f"/api/v1/nodes/{node}")


@pytest.mark.cluster
def test_rollout_that_does_not_finish_is_exit_code_1(site_factory) -> None:
    site = site_factory("v1.4.1")
    node = f"kferry-fake-node-{site.token}"
    site.cluster.post(
        "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
    )
    try:
        res = site.add(site.email(), "pw", "--timeout", "2s")
        assert res.code == 1
        assert "rollout did not finish within 2 s" in res.err
        # not rolled back: the user is in place, only the new pod is late
        assert site.entry(site.email()) is not None
        assert site.profile(profile_name_for(site.email())) is not None
    finally:
        site.cluster.delete(f"/api/v1/nodes/{node}")


@pytest.mark.parametrize(
    ("deployment", "done"),
    [
        ({"metadata": {"generation": 2}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 1}}, False),
        ({"metadata": {"generation": 2}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1,
                     "availableReplicas": 1}}, False),
        ({"metadata": {"generation": 2}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                     "availableReplicas": 0}}, False),
        ({"metadata": {"generation": 2}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                     "availableReplicas": 1}}, True),
    ],
)  # fmt: skip
def test_rollout_done(deployment: Obj, done: bool) -> None:
    assert rollout_done(deployment)[0] is done


# --------------------------------------------------------------------------------------------
# Dex itself accepts what kferry wrote


@pytest.mark.parametrize("release", list(LAYOUT))
@pytest.mark.cluster
def test_real_dex_accepts_the_password(site_factory, release: str, tmp_path: Path) -> None:
    site = site_factory(release)
    email, password = site.email("Frank"), "s3cret: with spaces & symbols #!"
    site.add_json(email, password)
    other = site.email("grace")
    site.add_json(other, "grace-password")

    with running_dex(site.config_text(), site.env(), tmp_path / "dex1") as dex:
        ok = dex.password_grant(email, password)
        assert ok.status_code == 200, ok.text
        claims = decode_jwt(ok.json()["id_token"])
        assert claims["email"] == email
        assert claims["sub"]  # Dex wraps the userID with the connector in sub
        assert dex.password_grant(email, "wrong password").status_code == 401
        assert dex.password_grant(email.lower(), password).status_code == 200  # as Dex does
        assert dex.password_grant(other, "grace-password").status_code == 200
        assert dex.password_grant(other, password).status_code == 401
        assert dex.password_grant(DEFAULT_USER, DEFAULT_PASSWORD).status_code == 200

    # a new password, and Dex (restarted, as the annotation makes Kubernetes do) takes it
    assert site.add_json(email, "the new one", "--reset-password")["dex"] == "updated"
    with running_dex(site.config_text(), site.env(), tmp_path / "dex2") as dex:
        assert dex.password_grant(email, "the new one").status_code == 200
        assert dex.password_grant(email, password).status_code == 401

    # removed: Dex no longer knows the user, and starts without the Secret key
    assert site.run("remove", other).code == 0
    with running_dex(site.config_text(), site.env(), tmp_path / "dex3") as dex:
        assert dex.password_grant(other, "grace-password").status_code == 401
        assert dex.password_grant(email, "the new one").status_code == 200


def decode_jwt(token: str) -> Obj:
    payload = token.split(".")[1]
    claims: Obj = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


# --------------------------------------------------------------------------------------------
# names and passwords


@pytest.mark.parametrize(
    ("email", "name"),
    [
        ("alice@example.com", "alice-example-com"),
        ("Alice.Smith+kf@Example.COM", "alice-smith-kf-example-com"),
        ("__x__@y..z", "x-y-z"),
        ("a" * 70 + "@example.com", "a" * 63),
        ("a" * 62 + ".b@example.com", "a" * 62),
    ],
)
def test_profile_name_for(email: str, name: str) -> None:
    assert profile_name_for(email) == name
    check_profile_name(name)


def test_names() -> None:
    assert user_id_for("alice@example.com") == user_id_for("ALICE@example.com")
    assert user_id_for("alice@example.com") != user_id_for("bob@example.com")
    uuid.UUID(user_id_for("alice@example.com"))
    assert env_key_for("alice.smith@example.com") == "DEX_ALICE_SMITH_EXAMPLE_COM_PASSWORD"
    taken = {"DEX_A_B_X_PASSWORD"}
    other = env_key_for("a-b@x", taken)
    assert other not in taken and other.startswith("DEX_A_B_X_") and other.endswith("_PASSWORD")
    for bad in ("", "a", "a@", "@b", "a b@c", "a@b@c", "a@b\n"):
        with pytest.raises(InputError):
            check_email(bad)
    with pytest.raises(InputError):
        check_profile_name("-x")
    with pytest.raises(InputError):
        profile_name_for("@@@")


def test_read_password() -> None:
    assert read_password(io.BytesIO(b"pw\n")) == "pw"
    assert read_password(io.BytesIO(b"pw\r\n")) == "pw"
    assert read_password(io.BytesIO(b" pw with spaces ")) == " pw with spaces "
    assert read_password(io.BytesIO("päss".encode())) == "päss"
    for bad in (b"", b"\n", b"a\nb", b"\xff", b"x" * 73):
        with pytest.raises(InputError):
            read_password(io.BytesIO(bad))


def test_choose_version() -> None:
    assert choose_version(["v1beta1", "v1"]) == "v1"
    assert choose_version(["v1beta1"]) == "v1beta1"
    assert choose_version(["v2", "v3"], preferred="v3") == "v3"
    assert choose_version([]) is None


@pytest.mark.cluster
def test_pull_secret_reaches_the_new_users_namespace(site_factory) -> None:
    site = site_factory("26.03")
    cluster, source = site.cluster, site.ns
    cfg = base64.b64encode(b'{"auths": {"harbor.local": {"auth": "c2VjcmV0"}}}').decode()
    cluster.post(
        f"/api/v1/namespaces/{source}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred"},
            "data": {".dockerconfigjson": cfg},
        },
    )
    profile = f"ps-{site.token}"
    # what the profile controller creates for a new Profile (no controller runs here)
    cluster.create_namespace(profile)
    for account in ("default-editor", "default-viewer"):
        cluster.post(
            f"/api/v1/namespaces/{profile}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        )
    out = site.add_json(
        site.email("pat"),
        "pw-pat",
        "--profile",
        profile,
        "--pull-secret",
        "regcred",
        "--pull-secret-from",
        source,
    )
    assert out["pullSecret"] == {
        "secret": "regcred",
        "namespace": profile,
        "copied": True,
        "accounts": ["default-editor", "default-viewer"],
        "missing": [],
    }
    copy = cluster.get(f"/api/v1/namespaces/{profile}/secrets/regcred")
    assert copy["type"] == "kubernetes.io/dockerconfigjson"
    assert copy["data"] == {".dockerconfigjson": cfg}
    for account in ("default-editor", "default-viewer"):
        sa = cluster.get(f"/api/v1/namespaces/{profile}/serviceaccounts/{account}")
        assert sa["imagePullSecrets"] == [{"name": "regcred"}]
    # again: nothing doubles
    site.add_json(
        site.email("pat"),
        "pw-pat",
        "--profile",
        profile,
        "--pull-secret",
        "regcred",
        "--pull-secret-from",
        source,
    )
    sa = cluster.get(f"/api/v1/namespaces/{profile}/serviceaccounts/default-editor")
    assert sa["imagePullSecrets"] == [{"name": "regcred"}]


@pytest.mark.cluster
def test_pull_secret_waits_for_the_profile_controller_within_the_timeout(site_factory) -> None:
    site = site_factory("26.03")
    res = site.add(
        site.email("quinn"), "pw-q", "--pull-secret", "nope", "--pull-secret-from", site.ns
    )
    assert res.code == 2 and "no Secret nope" in res.err  # checked before anything changes
    site.cluster.post(
        f"/api/v1/namespaces/{site.ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "regcred"},
            "data": {"a": "Yg=="},
        },
    )
    res = site.add(
        site.email("quinn"),
        "pw-q",
        "--pull-secret",
        "regcred",
        "--pull-secret-from",
        site.ns,
        "--timeout",
        "2s",
        "-o",
        "json",
    )
    assert res.code == 0, res.err
    assert "run the same command again later" in res.err
    assert json.loads(res.out)["pullSecret"]["missing"][0].startswith("namespace ")
