"""Planning target names: layouts, ports, reversibility, collisions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kferry.name import parse
from kferry.plan import PlanError, Target, plan, plan_one, unflatten
from kferry.plan.layout import flat_name
from tests.conftest import release_path, run_kferry

TO = Target.parse("harbor.local:8443/kf")
FLAT = Target.parse("harbor.local:8443/kf", "flat")
DROP_HOST = Target.parse("harbor.local:8443/kf", "drop-host")
QUEUE = "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("layout", "source", "target"),
    [
        (
            "keep",
            QUEUE,
            "harbor.local:8443/kf/gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:"
            + "a" * 64,
        ),
        ("keep", "python:3.7", "harbor.local:8443/kf/docker.io/library/python:3.7"),
        ("keep", "127.0.0.1:5001/a/b:1", "harbor.local:8443/kf/127.0.0.1-5001/a/b:1"),
        (
            "drop-host",
            "quay.io/jetstack/cert-manager-controller:v1.3.1",
            "harbor.local:8443/kf/jetstack/cert-manager-controller:v1.3.1",
        ),
        (
            "flat",
            "gcr.io/ml-pipeline/frontend:2.3.0",
            "harbor.local:8443/kf/gcr.io__ml-pipeline__frontend:2.3.0",
        ),
        ("flat", "127.0.0.1:5001/a/b:1", "harbor.local:8443/kf/127.0.0.1_5001__a__b:1"),
    ],
)
def test_layouts(layout: str, source: str, target: str) -> None:
    assert plan_one(parse(source), Target.parse(str(TO), layout)).canonical == target


def test_tags_stay_tags_and_digests_stay_digests() -> None:
    t = plan_one(parse("a/b:1@sha256:" + "c" * 64), TO)
    assert (t.tag, t.digest) == ("1", "sha256:" + "c" * 64)
    t = plan_one(parse("a/b"), TO)
    assert (t.tag, t.digest) == (None, None) and t.canonical.endswith(":latest")


hostname = st.from_regex(r"\A[a-z][a-z0-9-]{0,8}[a-z0-9](\.[a-z]{2,4}){1,2}\Z")
# components bounded, so that a flat name stays under the 255 characters it is refused beyond
component = st.from_regex(r"\A[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}\Z")


@given(hostname, st.none() | st.integers(1, 65535), st.lists(component, min_size=1, max_size=5))
def test_flat_names_are_reversible(host: str, port: int | None, path: list[str]) -> None:
    domain = f"{host}:{port}" if port else host
    ref = parse(f"{domain}/{'/'.join(path)}:t")
    name = flat_name(ref)
    assert "/" not in name
    assert unflatten(name) == ref.repository
    assert plan_one(ref, FLAT).path == f"kf/{name}"


def test_flat_refuses_irreversible_names() -> None:
    with pytest.raises(PlanError, match="cannot flatten"):
        plan_one(parse("gcr.io/a__b/c:1"), FLAT)


def test_collision_names_both_sources() -> None:
    with pytest.raises(PlanError) as info:
        plan([parse("gcr.io/team/app:1"), parse("quay.io/team/app:2")], DROP_HOST)
    assert "gcr.io/team/app" in str(info.value) and "quay.io/team/app" in str(info.value)
    # same repository, two tags: not a collision
    assert len(plan([parse("gcr.io/team/app:1"), parse("gcr.io/team/app:2")], DROP_HOST)) == 2


@pytest.mark.parametrize("bad", ["harbor", "", "https://", "harbor.local/Bad", "a b/c"])
def test_bad_destination(bad: str) -> None:
    with pytest.raises(PlanError):
        Target.parse(bad)


def test_plan_command_json(tmp_path) -> None:
    lst = tmp_path / "images.txt"
    lst.write_text("# comment\npython:3.7\n\n" + QUEUE + "\n")
    res = run_kferry("plan", "-f", str(lst), "--to", "harbor.local:8443/kf", "-o", "json")
    assert res.code == 0, res.err
    assert json.loads(res.out) == [
        {
            "source": "docker.io/library/python:3.7",
            "target": "harbor.local:8443/kf/docker.io/library/python:3.7",
        },
        {"source": QUEUE, "target": "harbor.local:8443/kf/" + QUEUE},
    ]


def test_plan_from_manifests_and_bad_list(tmp_path) -> None:
    res = run_kferry(
        "plan",
        "--from",
        str(release_path("v1.4.1")),
        "--to",
        "harbor.local/kf",
        "--layout",
        "flat",
        "-o",
        "json",
    )
    assert res.code == 0, res.err
    assert len(json.loads(res.out)) == 102
    lst = tmp_path / "bad.txt"
    lst.write_text("python:3.7\nNot/Valid\n")
    res = run_kferry("plan", "-f", str(lst), "--to", "harbor.local/kf")
    assert res.code == 2 and f"{lst}: line 2" in res.err
