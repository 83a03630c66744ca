"""``kferry status``: the classifier on every sample, -f input, the CLI, --wait/--watch logic."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kferry.errors import InputError
from kferry.status import (
    DEPLOYING,
    FAILED,
    READY,
    Selector,
    StatusResult,
    classify,
    evaluate,
    exit_code,
    follow,
    load_text,
    polling,
)
from kferry.status.classify import (
    MODEL_FAILURE_ORIGIN,
    NO_READY_MESSAGE,
    NO_STATUS_MESSAGE,
    parse_time,
)
from kferry.status.follow import EXIT_STILL_DEPLOYING
from kferry.status.rules import GENERIC_MESSAGES, PROGRESS_DEADLINE
from tests.conftest import DATA, run_kferry

CORPUS = DATA / "kserve-status"
EXTRA = DATA / "kserve-status-extra"
STATES = {READY, FAILED, DEPLOYING}

# What the shared corpus samples must give beyond their state: (reason, origin, waiting_on).
# `origin` is the condition whose message is the most specific one.
CORPUS_EXPECTED: dict[str, tuple[str, str, str]] = {
    "isvc-status-deploying-revisionmissing.json": (
        "RevisionMissing",
        "PredictorReady",
        "PredictorConfigurationReady",
    ),
    "isvc-status-failed-image-digest.json": ("RevisionFailed", "PredictorConfigurationReady", ""),
    "isvc-status-failed-rawdeployment-test.json": ("FailedCreate", "PredictorReady", ""),
    "isvc-status-insufficient-cpu-legacy-v1alpha1.json": (
        "RevisionFailed",
        "DefaultPredictorReady",
        "",
    ),
    "isvc-status-ready-rawdeployment.json": ("", "", ""),
    "isvc-status-ready-serverless-new.json": ("", "", ""),
    "isvc-status-ready-serverless.json": ("", "", ""),
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _samples(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.json") if _load(p).get("kind") != "List")


def expected_state(sample: dict[str, Any]) -> str:
    word = str(sample["_expected_state"]).split()[0].strip("(,;:")
    assert word in STATES, sample["_expected_state"]
    return word


def condition(sample: dict[str, Any], ctype: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in sample["status"]["conditions"] if c.get("type") == ctype
    ]
    assert found, ctype
    return found[0]


def is_generic(message: str) -> bool:
    return any(p.search(message) for p in GENERIC_MESSAGES)


def assert_most_specific(sample: dict[str, Any], result: StatusResult) -> None:
    """A failed verdict names a symptom only when no failing condition names a cause, and never
    repeats the aggregate Ready message when a dependent says more."""
    if result.state != FAILED:
        return
    conditions = sample.get("status", {}).get("conditions", [])
    failing = [c.get("message", "") for c in conditions if c.get("status") == "False"]
    if is_generic(result.message):
        assert all(is_generic(m) or not m for m in failing), result
    ready = [c for c in conditions if c.get("type") == "Ready"]
    if ready and result.origin != MODEL_FAILURE_ORIGIN:
        better = [m for m in failing if m and not is_generic(m)]
        if better and ready[0].get("message") not in better:
            assert result.message != ready[0].get("message")


# --- the samples ---------------------------------------------------------------------------


def test_corpus_is_complete() -> None:
    names = {p.name for p in _samples(CORPUS)}
    assert names, "tests/data/kserve-status is empty"
    assert set(CORPUS_EXPECTED) <= names  # the table names samples that exist
    for p in _samples(CORPUS):
        sample = _load(p)
        assert "_source" in sample and "_expected_state" in sample, p.name


@pytest.mark.parametrize("path", _samples(CORPUS), ids=lambda p: p.name)
def test_corpus_sample(path: Path) -> None:
    sample = _load(path)
    result = classify(sample)
    assert result.state == expected_state(sample), (result, sample["_expected_state"])
    assert_most_specific(sample, result)
    if path.name not in CORPUS_EXPECTED:  # a new sample: at least its reason is named
        if result.state == FAILED:
            assert result.reason in sample["_expected_state"]
        return
    reason, origin, waiting_on = CORPUS_EXPECTED[path.name]
    assert (result.reason, result.origin, result.waiting_on) == (reason, origin, waiting_on)
    if origin:
        assert result.message == condition(sample, origin).get("message", "")


@pytest.mark.parametrize("path", _samples(EXTRA), ids=lambda p: p.name)
def test_extra_sample(path: Path) -> None:
    sample = _load(path)
    assert "_source" in sample
    result = classify(sample)
    assert result.state == expected_state(sample), (result, sample["_expected_state"])
    assert_most_specific(sample, result)
    if "_expected_reason" in sample:
        assert result.reason == sample["_expected_reason"]
    if "_expected_origin" in sample:
        origin = sample["_expected_origin"]
        assert result.origin == origin
        if origin == MODEL_FAILURE_ORIGIN:
            expected = sample["status"]["modelStatus"]["lastFailureInfo"]["message"]
        else:
            expected = condition(sample, origin)["message"]
        assert result.message == expected
    if "_expected_waiting_on" in sample:
        assert result.waiting_on == sample["_expected_waiting_on"]


def test_image_digest_message_is_the_configuration_one_not_ready() -> None:
    sample = _load(CORPUS / "isvc-status-failed-image-digest.json")
    result = classify(sample)
    assert "failed to resolve image to digest" in result.message
    assert result.message != condition(sample, "Ready")["message"]


def test_raw_failure_is_never_revisionfailed() -> None:
    result = classify(_load(CORPUS / "isvc-status-failed-rawdeployment-test.json"))
    assert result.state == FAILED
    assert result.reason in {
        "FailedCreate",
        "MinimumReplicasUnavailable",
        "ProgressDeadlineExceeded",
    }
    assert "admission webhook" in result.message


def test_ready_url() -> None:
    result = classify(_load(CORPUS / "isvc-status-ready-serverless.json"))
    assert (result.name, result.namespace, result.url) == (
        "pmml-demo",
        "test",
        "http://pmml-demo.test.example.com",
    )
    v1alpha2 = classify(_load(EXTRA / "kfserving-v1alpha2-ready.json"))
    assert v1alpha2.url == "http://sklearn-iris.anonymous.example.com/v1/models/sklearn-iris"
    address_only = classify(
        {"status": {"conditions": [_c("Ready", "True")], "address": {"url": "http://a.b.svc"}}}
    )
    assert address_only.url == "http://a.b.svc"


# --- rules, one at a time --------------------------------------------------------------------


def _c(
    ctype: str, status: str, reason: str = "", message: str = "", **extra: str
) -> dict[str, str]:
    out = {"type": ctype, "status": status, **extra}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _isvc(*conditions: dict[str, str], api: str = "serving.kserve.io/v1beta1", **status: Any):
    return {
        "apiVersion": api,
        "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "ns"},
        "status": {"conditions": list(conditions), **status},
    }


T0 = datetime(2025, 4, 1, 10, 0, tzinfo=UTC)
MMU = "Deployment does not have minimum availability."


def test_minimum_replicas_unavailable_is_deploying_until_the_deadline() -> None:
    sample = _load(EXTRA / "raw-minimumreplicasunavailable.json")
    start = parse_time(condition(sample, "PredictorReady")["lastTransitionTime"])
    assert start == T0
    early = classify(sample, now=T0 + timedelta(minutes=1))
    assert (early.state, early.reason, early.waiting_on) == (
        DEPLOYING,
        "MinimumReplicasUnavailable",
        "PredictorReady",
    )
    assert early.message == MMU
    late = classify(sample, now=T0 + PROGRESS_DEADLINE + timedelta(seconds=1))
    assert (late.state, late.reason) == (FAILED, "MinimumReplicasUnavailable")
    custom = classify(
        sample, now=T0 + timedelta(minutes=2), progress_deadline=timedelta(seconds=60)
    )
    assert custom.state == FAILED


def test_minimum_replicas_unavailable_without_a_time_is_deploying() -> None:
    result = classify(
        _isvc(_c("PredictorReady", "False", "MinimumReplicasUnavailable", MMU)),
        now=T0,
    )
    assert result.state == DEPLOYING


@pytest.mark.parametrize(
    ("reason", "message", "state"),
    [
        ("RevisionFailed", 'Revision "r" failed with message: boom.', FAILED),
        ("RevisionMissing", 'Configuration "c" does not have any ready Revision.', FAILED),
        ("RevisionMissing", 'Revision "r" failed to become ready.', FAILED),
        (
            "RevisionMissing",
            'Configuration "c" is waiting for a Revision to become ready.',
            DEPLOYING,
        ),
        ("RevisionMissing", 'Revision "r" is not yet ready.', DEPLOYING),
        ("ProgressDeadlineExceeded", 'ReplicaSet "x" has timed out progressing.', FAILED),
        ("FailedCreate", 'pods "x" is forbidden: exceeded quota: compute', FAILED),
        ("IngressNotConfigured", "Ingress has not yet been reconciled.", DEPLOYING),
    ],
)
def test_false_condition_reasons(reason: str, message: str, state: str) -> None:
    result = classify(_isvc(_c("PredictorReady", "False", reason, message)))
    assert result.state == state
    assert (result.reason, result.message) == (reason, message)


def test_failure_reasons_need_status_false() -> None:
    result = classify(_isvc(_c("PredictorReady", "Unknown", "RevisionFailed", "x")))
    assert result.state == DEPLOYING


def test_ready_true_wins_over_everything() -> None:
    stale = {
        "transitionStatus": "BlockedByFailedLoad",
        "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "old"},
    }
    result = classify(
        _isvc(
            _c("PredictorReady", "False", "RevisionFailed", "r"),
            _c("Ready", "True"),
            modelStatus=stale,
        )
    )
    assert result.state == READY
    assert (result.reason, result.message) == ("", "")


def test_stale_last_failure_info_is_ignored_while_the_model_is_not_failing() -> None:
    model = {
        "transitionStatus": "InProgress",
        "states": {"activeModelState": "Loaded", "targetModelState": "Loading"},
        "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "yesterday's error"},
    }
    result = classify(
        _isvc(_c("Ready", "Unknown", "RevisionMissing", "waiting"), modelStatus=model)
    )
    assert result.state == DEPLOYING


def test_a_specific_condition_beats_last_failure_info() -> None:
    # lastFailureInfo is never cleared: a current, cause-bearing condition message wins
    cause = 'Revision "r" failed with message: Unable to fetch image "x": failed to resolve image'
    model = {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"targetModelState": "FailedToLoad"},
        "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "an older error"},
    }
    result = classify(
        _isvc(
            _c("PredictorConfigurationReady", "False", "RevisionFailed", cause),
            _c(
                "Ready",
                "False",
                "RevisionMissing",
                'Configuration "c" does not have any ready Revision.',
            ),
            modelStatus=model,
        )
    )
    assert (result.reason, result.message, result.origin) == (
        "RevisionFailed",
        cause,
        "PredictorConfigurationReady",
    )


def test_model_failure_without_last_failure_info() -> None:
    model = {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"targetModelState": "FailedToLoad"},
    }
    result = classify(_isvc(_c("Ready", "Unknown"), modelStatus=model))
    assert result.state == FAILED
    assert result.reason == "BlockedByFailedLoad"
    assert "FailedToLoad" in result.message
    active = classify(_isvc(modelStatus={"states": {"activeModelState": "FailedToLoad"}}))
    assert (active.state, active.reason) == (FAILED, "FailedToLoad")


def test_no_status_is_deploying_waiting_on_ready() -> None:
    result = classify({"kind": "InferenceService", "metadata": {"name": "new", "namespace": "x"}})
    assert (result.state, result.waiting_on, result.message) == (
        DEPLOYING,
        "Ready",
        NO_STATUS_MESSAGE,
    )


def test_all_true_without_ready_is_still_deploying() -> None:
    result = classify(_isvc(_c("PredictorReady", "True"), _c("IngressReady", "True")))
    assert (result.state, result.waiting_on, result.message) == (
        DEPLOYING,
        "Ready",
        NO_READY_MESSAGE,
    )


def test_stopped_false_is_not_a_pending_condition() -> None:
    result = classify(
        _isvc(
            _c("Stopped", "False"),
            _c(
                "IngressReady",
                "Unknown",
                "IngressNotConfigured",
                "Ingress has not yet been reconciled.",
            ),
            _c("PredictorReady", "True"),
            _c("Ready", "Unknown", "IngressNotConfigured", "Ingress has not yet been reconciled."),
        )
    )
    assert (result.state, result.waiting_on, result.reason) == (
        DEPLOYING,
        "IngressReady",
        "IngressNotConfigured",
    )


def test_swap_follows_the_group_unless_the_reasons_say_otherwise() -> None:
    failed = 'Revision "r" failed with message: boom.'
    missing = 'Configuration "c" is waiting for a Revision to become ready.'
    both_unknown = (
        _c("PredictorConfigurationReady", "Unknown"),
        _c("PredictorRouteReady", "Unknown"),
        _c("Ready", "Unknown", "RevisionMissing", missing),
    )
    # no evidence in the reasons: the group decides which one is the configuration
    assert classify(_isvc(*both_unknown, api="serving.kubeflow.org/v1beta1")).waiting_on == (
        "PredictorRouteReady"
    )
    assert classify(_isvc(*both_unknown)).waiting_on == "PredictorConfigurationReady"
    # a patched KFServing with the right names: RevisionFailed on the configuration name
    right = classify(
        _isvc(
            _c("PredictorConfigurationReady", "False", "RevisionFailed", failed),
            _c("PredictorRouteReady", "Unknown"),
            _c("Ready", "False", "RevisionFailed", failed),
            api="serving.kubeflow.org/v1beta1",
        )
    )
    assert right.origin == "PredictorConfigurationReady"


def test_info_severity_loses_ties() -> None:
    msg = 'Revision "r" failed with message: 0/1 nodes are available: 1 Insufficient cpu.'
    result = classify(
        _isvc(
            _c("CanaryPredictorReady", "False", "RevisionFailed", msg, severity="Info"),
            _c("DefaultPredictorReady", "False", "RevisionFailed", msg),
            _c("Ready", "False", "RevisionFailed", msg),
            api="serving.kubeflow.org/v1alpha2",
        )
    )
    assert result.origin == "DefaultPredictorReady"


def test_to_json_has_exactly_the_contract_keys() -> None:
    result = classify(_load(CORPUS / "isvc-status-failed-image-digest.json"))
    assert list(result.to_json()) == ["name", "namespace", "state", "reason", "message", "url"]
    assert all(isinstance(v, str) for v in result.to_json().values())


# --- -f input ---------------------------------------------------------------------------------


def test_yaml_scalars_are_normalised() -> None:
    text = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: a, namespace: b}
status:
  conditions:
  - type: PredictorReady
    status: False
    reason: MinimumReplicasUnavailable
    message: Deployment does not have minimum availability.
    lastTransitionTime: 2025-04-01T10:00:00Z
  - {type: Ready, status: False, reason: MinimumReplicasUnavailable}
"""
    loaded = load_text("x.yaml", text)
    assert [classify(o, now=T0 + timedelta(hours=1)).state for o in loaded.objects] == [FAILED]
    assert classify(loaded.objects[0], now=T0).state == DEPLOYING


def test_multi_document_yaml_skips_other_kinds() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: n}\n---\n"
        + json.dumps(_isvc(_c("Ready", "True")))
        + "\n---\n"
    )
    loaded = load_text("in.yaml", text)
    assert len(loaded.objects) == 1
    assert loaded.warnings == [
        "in.yaml: document 1: skipping ConfigMap/n/c: not an InferenceService"
    ]


def test_json_array_and_concatenated_stream() -> None:
    a = _isvc(_c("Ready", "Unknown"))
    b = _isvc(_c("Ready", "True"))
    assert len(load_text("a.json", json.dumps([a, a | {"metadata": {"name": "z"}}])).objects) == 2
    # `kubectl get isvc -o json --watch` prints one object per change: the last one wins
    stream = load_text("w.json", json.dumps(a) + "\n" + json.dumps(b) + "\n")
    assert [classify(o).state for o in stream.objects] == [READY]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty input"),
        ("   \n", "empty input"),
        ('{"kind": "List", "items": [1]}', "items[0]: expected an object"),
        ('{"a": ', "line 1, column 7: malformed JSON"),
        ("a: [b\n", "malformed YAML"),
        ("just a string\n", "expected an InferenceService object or a List"),
        ('{"foo": 1}', "not a Kubernetes object"),
        ("kind: Deployment\nmetadata: {name: d}\n", "no InferenceService in this input"),
        ('{"kind": "List", "items": {"a": 1}}', "'items' is not a list"),
    ],
)
def test_bad_input(text: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as err:
        load_text("in", text)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("in")


def test_empty_list_is_fine() -> None:
    assert load_text("l", '{"apiVersion": "v1", "kind": "List", "items": []}').objects == []


# --- the command ------------------------------------------------------------------------------


def status_json(*args: str, stdin: bytes | None = None) -> tuple[int, list[dict[str, str]]]:
    res = run_kferry("status", "-o", "json", *args, stdin=stdin)
    assert res.code in (0, 1), res.err
    data: list[dict[str, str]] = json.loads(res.out)
    return res.code, data


def test_cli_kubectl_pipe() -> None:
    code, data = status_json("-f", "-", stdin=(EXTRA / "list-several.json").read_bytes())
    assert code == 1
    assert [(d["namespace"], d["name"], d["state"]) for d in data] == [
        ("test", "pmml-demo", READY),
        ("merlin", "custom-sleep-6-r1", FAILED),
        ("merlin", "custom-sleep-5-r1", DEPLOYING),
    ]
    assert all(list(d) == ["name", "namespace", "state", "reason", "message", "url"] for d in data)
    assert data[0]["url"] == "http://pmml-demo.test.example.com"
    assert data[1]["reason"] == "RevisionFailed"
    assert "failed to resolve image to digest" in data[1]["message"]


def test_cli_yaml_list_matches_json_list() -> None:
    _, from_json = status_json("-f", str(EXTRA / "list-several.json"))
    _, from_yaml = status_json("-f", str(EXTRA / "list-several.yaml"))
    assert from_json == from_yaml


@pytest.mark.parametrize(
    ("args", "names", "code"),
    [
        (("pmml-demo",), ["pmml-demo"], 0),
        (("-n", "merlin"), ["custom-sleep-6-r1", "custom-sleep-5-r1"], 1),
        (("custom-sleep-5-r1", "-n", "merlin"), ["custom-sleep-5-r1"], 0),
        (("-n", "nowhere"), [], 0),
        (("-A",), ["pmml-demo", "custom-sleep-6-r1", "custom-sleep-5-r1"], 1),
    ],
)
def test_cli_selection_and_exit_codes(args: tuple[str, ...], names: list[str], code: int) -> None:
    got_code, data = status_json("-f", str(EXTRA / "list-several.yaml"), *args)
    assert [d["name"] for d in data] == names
    assert got_code == code


@pytest.mark.parametrize(
    ("sample", "code"),
    [
        (CORPUS / "isvc-status-ready-serverless.json", 0),
        (CORPUS / "isvc-status-failed-image-digest.json", 1),
        (CORPUS / "isvc-status-deploying-revisionmissing.json", 0),
    ],
)
def test_cli_exit_code_per_state(sample: Path, code: int) -> None:
    assert status_json("-f", str(sample))[0] == code


def test_cli_table() -> None:
    res = run_kferry("status", "-f", str(EXTRA / "list-several.yaml"))
    assert res.code == 1
    header = res.out.splitlines()[0].split()
    assert header == ["NAMESPACE", "NAME", "STATE", "WAITING", "ON", "REASON", "MESSAGE", "URL"]
    assert "PredictorConfigurationReady" in res.out
    assert "3 InferenceServices: 1 ready, 1 failed, 1 deploying" in res.out


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("-f", "nope.json"), None, "nope.json: no such file"),
        (("-f", "-"), b"", "<stdin>: empty input"),
        (("-f", "-"), b"\x00\x01binary", "binary data"),
        (("-f", "-"), b'{"kind": "List", "items": [', "malformed JSON"),
        (("-f", "-", "x"), b'{"kind": "List", "items": []}', "<stdin>: no InferenceService 'x'"),
        (("-n", "a", "-A"), None, "exclude each other"),
        (("m", "-A"), None, "exclude each other"),
        (("-f", "-", "--wait"), b"{}", "one snapshot"),
        (("-f", "-", "--watch"), b"{}", "one snapshot"),
        (("--timeout", "5m"), None, "--timeout applies to --wait and --watch"),
        (("--wait", "--timeout", "soon"), None, "not a duration"),
        ((), None, "no kubeconfig"),
        (("-n", "team-a", "m"), None, "no kubeconfig"),
        (("--wait",), None, "no kubeconfig"),
        (("-o", "xml"), None, "Invalid value"),
    ],
)
def test_cli_bad_usage_and_input(
    args: tuple[str, ...], stdin: bytes | None, message: str, tmp_path: Path
) -> None:
    res = run_kferry("status", *args, stdin=stdin, env={"KUBECONFIG": str(tmp_path / "none")})
    assert res.code == 2, (res.out, res.err)
    assert message in res.err
    assert res.out == ""


def test_cli_directory_is_refused(tmp_path: Path) -> None:
    res = run_kferry("status", "-f", str(tmp_path))
    assert (res.code, "is a directory" in res.err) == (2, True)


def test_cli_warns_about_skipped_objects(tmp_path: Path) -> None:
    f = tmp_path / "mixed.yaml"
    f.write_text(
        "kind: Service\nmetadata: {name: s}\n---\n" + json.dumps(_isvc(_c("Ready", "True")))
    )
    res = run_kferry("status", "-f", str(f), "-o", "json")
    assert res.code == 0
    assert "skipping Service//s: not an InferenceService" in res.err
    assert json.loads(res.out)[0]["state"] == READY


# --- --wait / --watch over a fake source --------------------------------------------------------

DEPLOYING_OBJ = _isvc(_c("Ready", "Unknown", "RevisionMissing", "waiting"))
READY_OBJ = _isvc(_c("Ready", "True"), url="http://m.ns.example.com")
FAILED_OBJ = _isvc(_c("Ready", "False", "RevisionFailed", "boom"))


def named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return obj | {"metadata": {"name": name, "namespace": "ns"}}


class FakeClock:
    """Each snapshot costs `step` seconds."""

    def __init__(self, step: float = 2.0) -> None:
        self.t = 0.0
        self.step = step

    def __call__(self) -> float:
        return self.t

    def feed(self, snapshots: Sequence[Sequence[dict[str, Any]]]) -> Iterator[Sequence[Any]]:
        for snap in snapshots:
            yield snap
            self.t += self.step


def test_wait_until_ready() -> None:
    clock = FakeClock()
    out = follow(
        clock.feed([[DEPLOYING_OBJ], [DEPLOYING_OBJ], [READY_OBJ], [FAILED_OBJ]]),
        until_settled=True,
        timeout=60,
        clock=clock,
    )
    assert not out.timed_out
    assert [r.state for r in out.results] == [READY]
    assert exit_code(out.results, waited=True) == 0
    assert clock.t == 4  # stopped at the third snapshot


def test_wait_times_out_while_deploying() -> None:
    clock = FakeClock(step=10)
    out = follow(clock.feed([[DEPLOYING_OBJ]] * 100), until_settled=True, timeout=30, clock=clock)
    assert out.timed_out
    assert clock.t == 30
    assert [r.state for r in out.deploying] == [DEPLOYING]
    assert exit_code(out.results, waited=True) == EXIT_STILL_DEPLOYING == 3
    assert exit_code(out.results) == 0  # a plain look at something deploying is not an error


def test_wait_a_failure_wins_over_the_timeout() -> None:
    clock = FakeClock(step=10)
    snap = [named(FAILED_OBJ, "a"), named(DEPLOYING_OBJ, "b")]
    out = follow(clock.feed([snap] * 10), until_settled=True, timeout=20, clock=clock)
    assert out.timed_out
    assert exit_code(out.results, waited=True) == 1


def test_wait_settles_on_failed() -> None:
    out = follow(iter([[DEPLOYING_OBJ], [FAILED_OBJ]]), until_settled=True, timeout=None)
    assert (out.timed_out, [r.state for r in out.results]) == (False, [FAILED])
    assert exit_code(out.results, waited=True) == 1


def test_wait_timeout_zero_looks_once() -> None:
    out = follow(iter([[DEPLOYING_OBJ], [READY_OBJ]]), until_settled=True, timeout=0)
    assert out.timed_out and [r.state for r in out.results] == [DEPLOYING]


def test_source_ending_while_deploying() -> None:
    out = follow(iter([[DEPLOYING_OBJ]]), until_settled=True, timeout=None)
    assert not out.timed_out
    assert exit_code(out.results, waited=True) == 3


def test_wait_for_a_name_that_does_not_exist_yet() -> None:
    selector = Selector("m", "ns")
    out = follow(
        iter([[], [named(DEPLOYING_OBJ, "other")], [named(READY_OBJ, "m")]]),
        selector,
        until_settled=True,
        timeout=None,
    )
    assert [(r.name, r.state) for r in out.results] == [("m", READY)]
    pending = evaluate([], selector, missing_is_pending=True)
    assert [(r.name, r.state, r.reason) for r in pending] == [("m", DEPLOYING, "NotFound")]
    with pytest.raises(InputError, match="no InferenceService 'm' in namespace 'ns'"):
        evaluate([], selector)


def test_watch_reports_changes_only() -> None:
    seen: list[list[str]] = []
    out = follow(
        iter([[DEPLOYING_OBJ], [DEPLOYING_OBJ], [READY_OBJ], [READY_OBJ], [DEPLOYING_OBJ]]),
        until_settled=False,
        timeout=None,
        on_change=lambda rs: seen.append([r.state for r in rs]),
    )
    assert seen == [[DEPLOYING], [READY], [DEPLOYING]]
    assert [r.state for r in out.results] == [DEPLOYING]


def test_watch_sees_a_deadline_pass_on_an_unchanged_object() -> None:
    sample = _load(EXTRA / "raw-minimumreplicasunavailable.json")
    times = iter([T0 + timedelta(minutes=1), T0 + timedelta(minutes=5), T0 + timedelta(minutes=11)])
    seen: list[str] = []
    follow(
        iter([[sample]] * 3),
        until_settled=False,
        timeout=None,
        on_change=lambda rs: seen.append(rs[0].state),
        wall=lambda: next(times),
    )
    assert seen == [DEPLOYING, FAILED]


def test_polling_reads_then_sleeps() -> None:
    reads = iter([[DEPLOYING_OBJ], [READY_OBJ]])
    slept: list[float] = []
    stream = polling(lambda: next(reads), interval=0.5, sleep=slept.append)
    assert next(stream) == [DEPLOYING_OBJ]
    assert next(stream) == [READY_OBJ]
    assert slept == [0.5]
