"""What InferenceService status fields mean, as data. The engine is :mod:`kferry.status.classify`.

Every table cites the upstream code it encodes (file paths are in the named repository):

- [isvc] kserve/kserve ``pkg/apis/serving/v1beta1/inference_service_status.go``: the condition
  types (``PredictorReady``, ``PredictorRouteReady``, ``PredictorConfigurationReady``,
  ``IngressReady``, ``RoutesReady``, ``LatestDeploymentReady``, ``Stopped``, ``Ready``);
  ``PropagateStatus`` (serverless: Knative Service ``Ready`` -> ``<Component>Ready``,
  ``RoutesReady`` -> ``<Component>RouteReady``, ``ConfigurationsReady`` ->
  ``<Component>ConfigurationReady``); ``PropagateCrossComponentStatus`` (aggregates whose reason
  is only ``"<condition> not ready"``); ``PropagateRawStatus`` (raw mode: the Deployment's
  ``ReplicaFailure``/``Available``/``Progressing`` reason and message are copied onto
  ``<Component>Ready``); ``ModelStatus`` (``transitionStatus`` UpToDate | InProgress |
  BlockedByFailedLoad | InvalidSpec, ``states.activeModelState``/``targetModelState`` Pending |
  Standby | Loading | Loaded | FailedToLoad, ``lastFailureInfo`` {location, reason, message,
  modelRevisionName, time, exitCode}); ``UpdateModelRevisionStates`` (FailedToLoad ->
  BlockedByFailedLoad) and ``SetModelFailureInfo`` (lastFailureInfo is set, never cleared).
- [swap] kserve/kserve issue #2012 "A problem about inference service status setting", fixed
  by PR #2016 "Fix status condition names" (KServe 0.8): before it, ``PropagateStatus`` put
  the Knative ``ConfigurationsReady`` condition under ``<Component>RouteReady`` and
  ``RoutesReady`` under ``<Component>ConfigurationReady``. ``serving.kubeflow.org/v1beta1``
  (KFServing 0.5/0.6, Kubeflow 1.3/1.4) and KServe 0.7 (``serving.kserve.io``) have the swap;
  ``v1alpha2`` has no route/configuration conditions.
- [knroute] knative/serving ``pkg/apis/serving/v1/route_lifecycle.go``: reason
  ``RevisionMissing`` with ``Configuration %q is waiting for a Revision to become ready.``
  (Unknown, ``MarkConfigurationNotReady``), ``Configuration %q does not have any ready
  Revision.`` (False, ``MarkConfigurationFailed``), ``Revision %q is not yet ready.``
  (Unknown) and ``Revision %q failed to become ready.`` (False, ``MarkRevisionFailed``).
- [knconfig] knative/serving ``pkg/apis/serving/v1/configuration_lifecycle.go``: reason
  ``RevisionFailed`` with ``Revision %q failed with message: %s.`` and ``Revision creation
  failed with message: %s.``; knative/serving revision reconciler: ``Initial scale was never
  achieved`` (the message of a revision that hit its progress deadline, no cause in it).
- [deploy] Kubernetes Deployment controller conditions: ``ReplicaFailure`` True
  ``FailedCreate`` (the API server's refusal, e.g. an admission webhook or a quota),
  ``Available`` False ``MinimumReplicasUnavailable`` ``Deployment does not have minimum
  availability.`` (also during every normal rollout), ``Progressing`` False
  ``ProgressDeadlineExceeded`` ``ReplicaSet %q has timed out progressing.`` after
  ``spec.progressDeadlineSeconds`` (default 600).
- [v1alpha2] kserve/kserve ``pkg/apis/serving/v1alpha2/inferenceservice_status.go`` and
  kubeflow/kfserving ``pkg/apis/serving/v1alpha1/kfservice_status.go``: ``Default*Ready``,
  ``Canary*Ready`` (one per component) and ``RoutesReady``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum


class Role(IntEnum):
    """What a condition reports on; higher = closer to the cause (more specific)."""

    READY = 0  # the overall Ready condition: mirrors whichever dependent is not happy
    AGGREGATE = 1  # RoutesReady, LatestDeploymentReady: reason is just "<X> not ready"
    OTHER = 2  # a condition type this table does not know
    INGRESS = 3  # IngressReady
    ROUTE = 4  # <Component>RouteReady: the Knative Route (traffic to a ready revision)
    COMPONENT = 5  # <Component>Ready: Knative Service Ready, or the raw Deployment
    CONFIGURATION = 6  # <Component>ConfigurationReady: the Knative Configuration (revisions)


_COMPONENTS = ("Predictor", "Transformer", "Explainer")

# [isvc] condition types; [v1alpha2] Default*/Canary*; KFServing spelled the transformer's
# configuration condition "TransformerConfigurationeReady" (sic) in serving.kubeflow.org/v1beta1.
CONDITION_ROLES: dict[str, Role] = {
    "Ready": Role.READY,
    "RoutesReady": Role.AGGREGATE,
    "LatestDeploymentReady": Role.AGGREGATE,
    "PredictRoutesReady": Role.AGGREGATE,
    "ExplainRoutesReady": Role.AGGREGATE,
    "IngressReady": Role.INGRESS,
    **{f"{c}RouteReady": Role.ROUTE for c in _COMPONENTS},
    "ExplainerRoutesReady": Role.ROUTE,
    **{f"{c}Ready": Role.COMPONENT for c in _COMPONENTS},
    **{f"{p}{c}Ready": Role.COMPONENT for p in ("Default", "Canary") for c in _COMPONENTS},
    **{f"{c}ConfigurationReady": Role.CONFIGURATION for c in _COMPONENTS},
    "TransformerConfigurationeReady": Role.CONFIGURATION,
}

# Conditions that say nothing about readiness: `Stopped` is False on a running service.
IGNORED_CONDITIONS = frozenset({"Stopped"})

# [swap] API groups whose route/configuration condition names are swapped.
SWAPPED_GROUPS = frozenset({"serving.kubeflow.org"})
# Reasons that only a Knative Configuration reports [knconfig] or only a Route reports
# [knroute]: seeing one under the other's name proves the swap (KServe 0.7 has it too, under
# serving.kserve.io), seeing one under its own name proves there is none.
CONFIGURATION_REASONS = frozenset({"RevisionFailed", "RevisionDeleted"})
ROUTE_REASONS = frozenset({"RevisionMissing"})

# Default Deployment spec.progressDeadlineSeconds; KServe does not set it [deploy].
PROGRESS_DEADLINE = timedelta(seconds=600)


@dataclass(frozen=True, slots=True)
class FailureRule:
    """A condition with ``status: "False"`` and this reason means the service failed."""

    reason: str
    cite: str
    message: re.Pattern[str] | None = None  # the message must match, when given
    after_deadline: bool = False  # only once lastTransitionTime is past the progress deadline


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


FAILURE_RULES: tuple[FailureRule, ...] = (
    FailureRule("RevisionFailed", "knconfig: the latest revision failed (serverless)"),
    FailureRule(
        "RevisionMissing",
        "knroute: False = no ready revision left (Unknown = still waiting for one)",
        message=_pattern(r"does not have any ready Revision|failed to become ready"),
    ),
    FailureRule("ProgressDeadlineExceeded", "deploy: raw mode, Progressing=False"),
    FailureRule("FailedCreate", "deploy: raw mode, ReplicaFailure=True"),
    FailureRule(
        "MinimumReplicasUnavailable",
        "deploy: raw mode, Available=False; normal during a rollout until the deadline",
        after_deadline=True,
    ),
)

# Messages that name the symptom, not the cause: any other failing message beats them, and so
# does modelStatus.lastFailureInfo (the container's own termination message).
GENERIC_MESSAGES: tuple[re.Pattern[str], ...] = (
    _pattern(r"does not have any ready Revision"),  # knroute
    _pattern(r"failed to become ready"),  # knroute
    _pattern(r"Initial scale was never achieved"),  # knconfig (revision progress deadline)
    _pattern(r"Deployment does not have minimum availability"),  # deploy
    _pattern(r"has timed out progressing"),  # deploy
)

# [isvc] ModelStatus values that mean the model cannot be served.
FAILED_TRANSITIONS = frozenset({"BlockedByFailedLoad", "InvalidSpec"})
FAILED_MODEL_STATES = frozenset({"FailedToLoad"})
