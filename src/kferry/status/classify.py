"""InferenceService status -> ready, failed (reason and the message that explains it) or deploying.

The rules are tables in :mod:`kferry.status.rules` (each citing the KServe, Knative or Kubernetes
code it encodes); this module is the small engine that applies them:

1. ``Ready=True`` -> **ready**, with the URL (``status.url``, else ``status.address.url``).
2. **failed** when a condition is ``False`` with a reason of ``FAILURE_RULES`` (``RevisionFailed``;
   ``RevisionMissing`` saying there is no ready revision; raw mode ``ProgressDeadlineExceeded``,
   ``FailedCreate``, ``MinimumReplicasUnavailable`` once past the progress deadline), or when
   ``status.modelStatus`` says so (``transitionStatus`` BlockedByFailedLoad | InvalidSpec, or a
   model state FailedToLoad; the reason and message are then ``lastFailureInfo``'s).
   Of all the evidence, the most specific wins: a cause-bearing message (``failed to resolve
   image to digest ... x509``) before ``lastFailureInfo`` before a symptom (``does not have any
   ready Revision``, ``Initial scale was never achieved``); then the condition closest to the
   cause: ``<Component>ConfigurationReady`` > ``<Component>Ready`` > ``<Component>RouteReady``
   > ``IngressReady`` > aggregates > ``Ready``. ``Ready`` often shows ``RevisionMissing`` while
   the cause sits on ``PredictorConfigurationReady``.
3. Otherwise **deploying**, waiting on the not-yet-true condition closest to the cause, with the
   most informative reason and message among the not-yet-true conditions.

In the ``serving.kubeflow.org`` group (KFServing, Kubeflow <= 1.4) and KServe 0.7 the
route/configuration condition names are swapped (kserve/kserve#2012, fixed in 0.8 by #2016):
the roles are swapped back before ranking, using the reasons as evidence when they disagree
with the group (``RevisionFailed`` under ``PredictorRouteReady`` proves the swap).

Sources (details and file paths in :mod:`kferry.status.rules`): kserve/kserve
``pkg/apis/serving/v1beta1/inference_service_status.go`` (condition types, ``PropagateStatus``,
``PropagateRawStatus``, ``ModelStatus``), kserve/kserve#2012 and #2016 (the swap), knative/serving
``pkg/apis/serving/v1/route_lifecycle.go`` (``RevisionMissing``: "Configuration %q is waiting for
a Revision to become ready." when Unknown, "Configuration %q does not have any ready Revision."
when False) and ``configuration_lifecycle.go`` (``RevisionFailed``: "Revision %q failed with
message: %s."), and the Kubernetes Deployment conditions (``FailedCreate``,
``MinimumReplicasUnavailable``, ``ProgressDeadlineExceeded``).

``lastFailureInfo`` is never cleared by KServe, so it is only used while the model status says
the model is failing, and a current, specific condition message beats it. The service's
``observedGeneration`` is not compared with ``metadata.generation``: KServe copies the Knative
Service's (serverless) or the Deployment's (raw) generation into it, not its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from kferry.status.rules import (
    CONDITION_ROLES,
    CONFIGURATION_REASONS,
    FAILED_MODEL_STATES,
    FAILED_TRANSITIONS,
    FAILURE_RULES,
    GENERIC_MESSAGES,
    IGNORED_CONDITIONS,
    PROGRESS_DEADLINE,
    ROUTE_REASONS,
    SWAPPED_GROUPS,
    FailureRule,
    Role,
)

State = Literal["ready", "failed", "deploying"]
READY: State = "ready"
FAILED: State = "failed"
DEPLOYING: State = "deploying"

MODEL_FAILURE_ORIGIN = "modelStatus.lastFailureInfo"
NO_STATUS_MESSAGE = "the controller has not reported any status yet"
NO_READY_MESSAGE = "no Ready condition reported yet"


@dataclass(frozen=True, slots=True)
class StatusResult:
    """The verdict for one InferenceService.

    ``waiting_on`` is the condition a deploying service waits on (empty otherwise); ``origin``
    says where ``reason``/``message`` were read (a condition type or
    ``modelStatus.lastFailureInfo``).
    """

    name: str
    namespace: str
    state: State
    reason: str = ""
    message: str = ""
    url: str = ""
    waiting_on: str = ""
    origin: str = ""

    def to_json(self) -> dict[str, str]:
        """The ``-o json`` shape, exactly these keys."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "state": self.state,
            "reason": self.reason,
            "message": self.message,
            "url": self.url,
        }


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str
    severity: str
    last_transition: datetime | None
    index: int  # position in status.conditions, for stable tie-breaking
    role: Role = Role.OTHER


@dataclass(frozen=True, slots=True)
class _Evidence:
    rank: tuple[int, ...]
    reason: str
    message: str
    origin: str


# Evidence tiers: the first element of a rank.
_SPECIFIC, _MODEL, _GENERIC, _BARE = 3, 2, 1, 0


def text(value: Any) -> str:
    """A scalar as Kubernetes wrote it (YAML may have turned ``True`` into a bool)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping | list):
        return ""
    return str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (or a YAML-parsed datetime) as an aware UTC datetime."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str) and value.strip():
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def api_group(obj: Mapping[str, Any]) -> str:
    api_version = text(obj.get("apiVersion"))
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _conditions(status: Mapping[str, Any]) -> list[Condition]:
    raw = status.get("conditions")
    out: list[Condition] = []
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, Mapping):
            continue
        ctype = text(item.get("type"))
        if not ctype or ctype in IGNORED_CONDITIONS:
            continue
        out.append(
            Condition(
                type=ctype,
                status=text(item.get("status")),
                reason=text(item.get("reason")),
                message=text(item.get("message")),
                severity=text(item.get("severity")),
                last_transition=parse_time(item.get("lastTransitionTime")),
                index=i,
            )
        )
    return out


def _swapped(group: str, conditions: Sequence[Condition]) -> bool:
    """Whether route/configuration condition names are swapped (kserve/kserve#2012)."""
    for c in conditions:
        role = CONDITION_ROLES.get(c.type)
        if role is Role.ROUTE and c.reason in CONFIGURATION_REASONS:
            return True
        if role is Role.CONFIGURATION and c.reason in CONFIGURATION_REASONS:
            return False
        if role is Role.CONFIGURATION and c.reason in ROUTE_REASONS:
            return True
        if role is Role.ROUTE and c.reason in ROUTE_REASONS:
            return False
    return group in SWAPPED_GROUPS


def _with_roles(conditions: Sequence[Condition], swapped: bool) -> list[Condition]:
    swap = {Role.ROUTE: Role.CONFIGURATION, Role.CONFIGURATION: Role.ROUTE} if swapped else {}
    out = []
    for c in conditions:
        role = CONDITION_ROLES.get(c.type, Role.OTHER)
        out.append(replace(c, role=swap.get(role, role)))
    return out


def _generic(message: str) -> bool:
    return any(p.search(message) for p in GENERIC_MESSAGES)


def _matching_rule(c: Condition, now: datetime, deadline: timedelta) -> FailureRule | None:
    if c.status != "False":
        return None
    for rule in FAILURE_RULES:
        if rule.reason != c.reason:
            continue
        if rule.message is not None and not rule.message.search(c.message):
            continue
        if rule.after_deadline and (
            c.last_transition is None or now - c.last_transition < deadline
        ):
            continue
        return rule
    return None


def _condition_rank(c: Condition, tier: int) -> tuple[int, ...]:
    # Info-severity conditions (a canary, Knative's informational ones) do not decide Ready.
    return (tier, int(c.role), int(c.severity != "Info"), -c.index)


def _failure_evidence(
    conditions: Sequence[Condition], now: datetime, deadline: timedelta
) -> list[_Evidence]:
    out = []
    for c in conditions:
        if _matching_rule(c, now, deadline) is None:
            continue
        tier = _GENERIC if not c.message.strip() or _generic(c.message) else _SPECIFIC
        out.append(_Evidence(_condition_rank(c, tier), c.reason, c.message, c.type))
    return out


def _model_evidence(status: Mapping[str, Any]) -> _Evidence | None:
    model = _mapping(status.get("modelStatus"))
    transition = text(model.get("transitionStatus"))
    states = _mapping(model.get("states"))
    active = text(states.get("activeModelState"))
    target = text(states.get("targetModelState"))
    failed_states = [s for s in (target, active) if s in FAILED_MODEL_STATES]
    if transition not in FAILED_TRANSITIONS and not failed_states:
        return None
    info = _mapping(model.get("lastFailureInfo"))
    reason = text(info.get("reason")) or (
        transition if transition in FAILED_TRANSITIONS else failed_states[0]
    )
    message = text(info.get("message"))
    if message.strip():
        return _Evidence((_MODEL,), reason, message, MODEL_FAILURE_ORIGIN)
    described = ", ".join(
        f"{key} {value}"
        for key, value in (
            ("transitionStatus", transition),
            ("activeModelState", active),
            ("targetModelState", target),
        )
        if value
    )
    return _Evidence((_BARE,), reason, f"modelStatus: {described}", "modelStatus")


def _url(status: Mapping[str, Any]) -> str:
    return text(status.get("url")) or text(_mapping(status.get("address")).get("url"))


def classify(
    obj: Mapping[str, Any],
    *,
    now: datetime | None = None,
    progress_deadline: timedelta = PROGRESS_DEADLINE,
) -> StatusResult:
    """Classify one InferenceService (a parsed object: ``metadata`` and ``status`` matter).

    ``now`` (default: the current time) decides whether a raw-mode
    ``MinimumReplicasUnavailable`` has outlived ``progress_deadline``.
    """
    meta = _mapping(obj.get("metadata"))
    status = _mapping(obj.get("status"))
    name, namespace = text(meta.get("name")), text(meta.get("namespace"))
    url = _url(status)
    found = _conditions(status)
    conditions = _with_roles(found, _swapped(api_group(obj), found))

    ready = next((c for c in conditions if c.type == "Ready"), None)
    if ready is not None and ready.status == "True":
        return StatusResult(name, namespace, READY, url=url)

    when = now if now is not None else datetime.now(UTC)
    evidence = _failure_evidence(conditions, when, progress_deadline)
    model = _model_evidence(status)
    if model is not None:
        evidence.append(model)
    if evidence:
        best = max(evidence, key=lambda e: e.rank)
        return StatusResult(
            name, namespace, FAILED, best.reason, best.message, url, origin=best.origin
        )

    pending = [c for c in conditions if c.status != "True"]
    if not pending:  # a new object, or every condition true but Ready not there yet
        message = NO_READY_MESSAGE if conditions else NO_STATUS_MESSAGE
        return StatusResult(name, namespace, DEPLOYING, "", message, url, "Ready")
    waiting = max(pending, key=lambda c: (int(c.role), -c.index))
    told = max(
        pending,
        key=lambda c: (
            bool(c.message.strip()),
            bool(c.reason),
            # an aggregate's reason is only "<condition> not ready": a pointer, not news
            int(c.role) if c.role is not Role.AGGREGATE else -1,
            -c.index,
        ),
    )
    return StatusResult(
        name,
        namespace,
        DEPLOYING,
        told.reason,
        told.message,
        url,
        waiting_on=waiting.type,
        origin=told.type if (told.reason or told.message) else "",
    )
