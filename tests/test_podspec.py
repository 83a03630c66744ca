"""One pod-spec rule for both object models (YAML nodes for fixes, dicts for doctor)."""

from __future__ import annotations

import textwrap

import yaml

from kferry.podspec import pod_spec_dicts, pod_spec_nodes

OBJECTS = textwrap.dedent(
    """\
    kind: Pod
    metadata: {name: p}
    spec: {containers: [{name: a, image: a:1}]}
    status: {containers: [{name: not-a-spec}]}
    ---
    kind: Deployment
    metadata: {name: d, annotations: {containers: []}}
    spec: {template: {metadata: {containers: []}, spec: {containers: [{image: b:1}]}}}
    ---
    kind: CronJob
    metadata: {name: c}
    spec: {jobTemplate: {spec: {template: {spec: {initContainers: [], containers: [{image: c}]}}}}}
    ---
    apiVersion: kubeflow.org/v1
    kind: Notebook
    metadata: {name: nb}
    spec: {template: {spec: {containers: [{image: jupyter}]}}}
    ---
    apiVersion: serving.kserve.io/v1beta1
    kind: InferenceService
    metadata: {name: isvc}
    spec:
      predictor: {containers: [{image: predictor}]}
      transformer: {containers: [{image: transformer}]}
    ---
    apiVersion: serving.knative.dev/v1
    kind: Service
    metadata: {name: ksvc}
    spec: {template: {spec: {containers: [{image: ksvc}]}}}
    ---
    kind: ConfigMap
    metadata: {name: cm}
    data: {containers: "[]", spec: "containers: [x]"}
    ---
    kind: Deployment
    metadata: {name: broken}
    spec: {template: {spec: {containers: "not a list"}}}
    """
)


def _images(specs: list[dict]) -> list[list[str]]:  # type: ignore[type-arg]
    return sorted(sorted(c["image"] for c in s["containers"]) for s in specs)


def test_nodes_and_dicts_find_the_same_pod_specs() -> None:
    nodes = list(yaml.compose_all(OBJECTS, Loader=yaml.CSafeLoader))
    dicts = list(yaml.load_all(OBJECTS, Loader=yaml.CSafeLoader))
    per_node = [
        [yaml.load(yaml.serialize(s), Loader=yaml.CSafeLoader) for s in pod_spec_nodes(n)]
        for n in nodes
    ]
    per_dict = [[dict(s) for s in pod_spec_dicts(d)] for d in dicts]
    assert per_node == per_dict
    assert [_images(x) for x in per_dict] == [
        [["a:1"]],
        [["b:1"]],
        [["c"]],
        [["jupyter"]],
        [["predictor"], ["transformer"]],
        [["ksvc"]],
        [],
        [],
    ]
