"""Discovery rules on small manifests: each place an image hides, and each look-alike."""

from __future__ import annotations

import json
import textwrap

from kferry.discover import Inventory, discover
from kferry.load import Source, load_objects


def inventory(text: str) -> Inventory:
    objects, _ = load_objects([Source("test.yaml", textwrap.dedent(text))])
    return discover(objects)


def found(text: str) -> dict[str, list[tuple[str, str, str]]]:
    return {
        img.canonical: [(loc.object, loc.path, loc.how) for loc in img.locations]
        for img in inventory(text).images
    }


def configmap(name: str, data: dict[str, str], namespace: str = "kubeflow") -> str:
    body = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }
    )
    return body + "\n"


def test_pod_spec_fields_in_every_kind() -> None:
    got = found(
        """
        apiVersion: batch/v1
        kind: CronJob
        metadata: {name: cj, namespace: ns}
        spec:
          jobTemplate:
            spec:
              template:
                spec:
                  initContainers: [{name: init, image: "alpine:3.20"}]
                  containers: [{name: main, image: "ghcr.io/x/job:1"}]
                  ephemeralContainers: [{name: dbg, image: "busybox"}]
        ---
        apiVersion: kubeflow.org/v1
        kind: PyTorchJob
        metadata: {name: pj, namespace: ns}
        spec:
          pytorchReplicaSpecs:
            Master:
              template:
                spec:
                  containers: [{name: pytorch, image: "pytorch/pytorch:2.1"}]
        ---
        apiVersion: caching.internal.knative.dev/v1alpha1
        kind: Image
        metadata: {name: queue-proxy, namespace: knative-serving}
        spec:
          image: gcr.io/knative-releases/queue@sha256:%s
        ---
        apiVersion: serving.kserve.io/v1alpha1
        kind: ClusterServingRuntime
        metadata: {name: kserve-sklearnserver}
        spec:
          containers: [{name: kserve-container, image: "kserve/sklearnserver:v0.13.1"}]
        """
        % ("a" * 64)
    )
    assert got["docker.io/library/alpine:3.20"] == [
        (
            "CronJob/ns/cj",
            "spec.jobTemplate.spec.template.spec.initContainers[name=init].image",
            "field",
        )
    ]
    assert "ghcr.io/x/job:1" in got
    assert "docker.io/library/busybox:latest" in got
    assert got["docker.io/pytorch/pytorch:2.1"][0][1] == (
        "spec.pytorchReplicaSpecs.Master.template.spec.containers[name=pytorch].image"
    )
    assert got["gcr.io/knative-releases/queue@sha256:" + "a" * 64][0][:2] == (
        "Image/knative-serving/queue-proxy",
        "spec.image",
    )
    assert got["docker.io/kserve/sklearnserver:v0.13.1"][0][0] == (
        "ClusterServingRuntime//kserve-sklearnserver"
    )


def test_env_values_and_both_flag_forms() -> None:
    got = found("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d, namespace: ns}
        spec:
          template:
            spec:
              containers:
              - name: c
                image: ctrl:1
                args: ["--executor-image", "quay.io/argoproj/argoexec:v3.4",
                       "--acme-http01-solver-image=quay.io/jetstack/acme:v1",
                       "--upstream=http://127.0.0.1:8080/", "--v=2", "--log-level", "info",
                       "sh -c 'run --sidecar-image=ghcr.io/x/side:2 --port 80'"]
                env:
                - {name: V2_DRIVER_IMAGE, value: "ghcr.io/kubeflow/kfp-driver:2.5.0"}
                - {name: DB_HOST, value: "mysql:3306"}
                - {name: LOG_LEVEL, value: "debug"}
                - {name: VIEWER_IMAGE, valueFrom: {configMapKeyRef: {name: x, key: y}}}
        """)
    assert set(got) == {
        "docker.io/library/ctrl:1",
        "quay.io/argoproj/argoexec:v3.4",
        "quay.io/jetstack/acme:v1",
        "ghcr.io/x/side:2",
        "ghcr.io/kubeflow/kfp-driver:2.5.0",
    }
    assert got["quay.io/argoproj/argoexec:v3.4"][0][1:] == (
        "spec.template.spec.containers[name=c].args[1]",
        "string",
    )
    assert got["ghcr.io/kubeflow/kfp-driver:2.5.0"][0][1] == (
        "spec.template.spec.containers[name=c].env[name=V2_DRIVER_IMAGE].value"
    )


def test_configmap_json_yaml_and_plain_values() -> None:
    got = found(
        configmap(
            "katib-config",
            {
                "suggestion": json.dumps({"random": {"image": "docker.io/kubeflowkatib/s:v1"}}),
                "katib-config.yaml": "runtime:\n  metricsCollectors:\n  - kind: File\n"
                "    image: ghcr.io/kubeflow/katib/fmc:v0.17\n",
                "queue-sidecar-image": "gcr.io/knative/queue:1",
                "cacheImage": "gcr.io/google-containers/busybox",
                "dbHost": "mysql",
                "dbPort": "3306",
                "endpoint": "minio-service.kubeflow:9000",
                "LOG_LEVEL": "info",
            },
        )
    )
    assert set(got) == {
        "docker.io/kubeflowkatib/s:v1",
        "ghcr.io/kubeflow/katib/fmc:v0.17",
        "gcr.io/knative/queue:1",
        "gcr.io/google-containers/busybox:latest",
    }
    assert got["ghcr.io/kubeflow/katib/fmc:v0.17"][0][1] == (
        "data['katib-config.yaml']|yaml:.runtime.metricsCollectors[kind=File].image"
    )
    assert got["docker.io/kubeflowkatib/s:v1"][0][1:] == (
        "data.suggestion|json:.random.image",
        "string",
    )


def test_nested_documents_and_template_text() -> None:
    inner = (
        "spec:\n  template:\n    spec:\n      containers:\n      - name: t\n"
        "        image: docker.io/kubeflowkatib/mxnet-mnist:v1\n"
    )
    spawner = (
        "spawnerFormDefaults:\n  image:\n    value: ghcr.io/nb/jupyter:v1\n"
        "    options:\n    - ghcr.io/nb/jupyter:v1\n    - ghcr.io/nb/pytorch:v1\n"
        "    readOnly: false\n  imagePullPolicy:\n    value: IfNotPresent\n"
        "  imageGroupOne:\n    value: ghcr.io/nb/codeserver:v1\n    options: []\n"
    )
    template = (
        "templates:\n  grpc-simple: |\n    spec:\n      initContainers:\n"
        "        - name: grpc-bootstrap-init\n          image: busybox:1.28\n"
        "      containers:\n      - name: x\n"
        '        image: "{{ .ProxyImage }}"\n        {{- if .Values.x }}\n'
    )
    got = found(
        configmap("trial-templates", {"t.yaml": inner})
        + "---\n"
        + configmap("jupyter-web-app-config", {"spawner_ui_config.yaml": spawner})
        + "---\n"
        + configmap("istio-sidecar-injector", {"config": template}, namespace="istio-system")
    )
    assert set(got) == {
        "docker.io/kubeflowkatib/mxnet-mnist:v1",
        "ghcr.io/nb/jupyter:v1",
        "ghcr.io/nb/pytorch:v1",
        "ghcr.io/nb/codeserver:v1",
        "docker.io/library/busybox:1.28",
    }
    paths = {p for _, p, _ in got["ghcr.io/nb/jupyter:v1"]}
    assert paths == {
        "data['spawner_ui_config.yaml']|yaml:.spawnerFormDefaults.image.value",
        "data['spawner_ui_config.yaml']|yaml:.spawnerFormDefaults.image.options[0]",
    }
    busybox = inventory(
        configmap("istio-sidecar-injector", {"config": template}, namespace="istio-system")
    ).images[0]
    assert busybox.optional  # catalog: only the grpc-simple template uses it


def test_documentation_is_not_images() -> None:
    got = found("""
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: notebooks.kubeflow.org}
        spec:
          versions:
          - name: v1
            schema:
              openAPIV3Schema:
                properties:
                  image: {type: string, description: "e.g. image: jupyter/base:1"}
                  example: {default: {image: "gcr.io/example/image:1"}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: config-deployment, namespace: knative-serving}
        data:
          _example: |
            queue-sidecar-image: gcr.io/example/queue:1
            registries-skipping-tag-resolving: "kind.local,ko.local,dev.local"
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: s, namespace: ns}
        stringData: {image: "secret.example.com/private:1"}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: p, namespace: ns}
        spec:
          containers:
          - {name: a, image: "$(IMAGE)", args: ["--image=${IMAGE}"]}
          - {name: b, image: "{{ .Values.image }}"}
        """)
    assert got == {}


def test_invalid_image_in_a_pod_spec_is_a_problem_not_a_crash() -> None:
    inv = inventory("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p, namespace: ns}
        spec:
          containers:
          - {name: a, image: "Busybox:1.0"}
          - {name: b, image: "nginx:1.27"}
        """)
    assert [i.canonical for i in inv.images] == ["docker.io/library/nginx:1.27"]
    assert len(inv.problems) == 1
    problem = inv.problems[0]
    assert problem.written == "Busybox:1.0"
    assert problem.location.path == "spec.containers[name=a].image"
    assert "lowercase" in (problem.error or "")


ISTIO_VALUES = {
    "global": {
        "hub": "docker.io/istio",
        "tag": "1.9.6",
        "proxy": {"image": "proxyv2"},
        "proxy_init": {"image": "proxyv2"},
        "imagePullPolicy": "",
        "pilot": {"image": "should-not-matter"},
    }
}


def test_istio_hub_and_tag_compose_and_parts_are_not_images_alone() -> None:
    got = found(
        configmap(
            "istio-sidecar-injector", {"values": json.dumps(ISTIO_VALUES)}, namespace="istio-system"
        )
    )
    assert got["docker.io/istio/proxyv2:1.9.6"] == [
        (
            "ConfigMap/istio-system/istio-sidecar-injector",
            "data.values|json:.global.hub + .global.proxy.image + .global.tag",
            "composed",
        ),
        (
            "ConfigMap/istio-system/istio-sidecar-injector",
            "data.values|json:.global.hub + .global.proxy_init.image + .global.tag",
            "composed",
        ),
    ]
    assert "docker.io/library/proxyv2:latest" not in got


def test_istio_variant_and_full_image() -> None:
    values = {
        "global": {
            "hub": "gcr.io/istio-release",
            "tag": "1.22.1",
            "variant": "distroless",
            "proxy": {"image": "harbor.local/kf/proxyv2:custom"},
            "proxy_init": {"image": "proxyv2"},
        }
    }
    got = found(
        configmap(
            "istio-sidecar-injector", {"values": json.dumps(values)}, namespace="istio-system"
        )
    )
    assert set(got) == {
        "harbor.local/kf/proxyv2:custom",
        "gcr.io/istio-release/proxyv2:1.22.1-distroless",
    }


def test_kserve_image_and_versions() -> None:
    predictors = {
        "tensorflow": {
            "image": "tensorflow/serving",
            "defaultImageVersion": "1.14.0",
            "defaultGpuImageVersion": "1.14.0-gpu",
        },
        "sklearn": {"v2": {"image": "docker.io/seldonio/mlserver", "defaultImageVersion": "0.2.1"}},
    }
    got = found(configmap("inferenceservice-config", {"predictors": json.dumps(predictors)}))
    assert set(got) == {
        "docker.io/tensorflow/serving:1.14.0",
        "docker.io/tensorflow/serving:1.14.0-gpu",
        "docker.io/seldonio/mlserver:0.2.1",
    }
    assert got["docker.io/seldonio/mlserver:0.2.1"][0][1:] == (
        "data.predictors|json:.sklearn.v2.image + .sklearn.v2.defaultImageVersion",
        "composed",
    )


SYNC_PY = """
def get_settings_from_env(frontend_image=None):
    settings["frontend_image"] = \\
        frontend_image or \\
        os.environ.get("FRONTEND_IMAGE", "gcr.io/ml-pipeline/frontend")
    settings["frontend_tag"] = \\
        os.environ.get("FRONTEND_TAG") or \\
        os.environ["KFP_VERSION"]
"""


PROFILE_CONTROLLER = """\
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kubeflow-pipelines-profile-controller, namespace: kubeflow}
spec:
  template:
    spec:
      containers:
      - name: profile-controller
        image: python:3.12
        env:
        - name: KFP_VERSION
          valueFrom: {configMapKeyRef: {name: pipeline-install-config, key: appVersion}}
%s      volumes:
      - name: hooks
        configMap: {name: kubeflow-pipelines-profile-controller-code-abcde12345}
"""


def kfp_profile_controller(env: str = "") -> str:
    return (
        configmap("kubeflow-pipelines-profile-controller-code-abcde12345", {"sync.py": SYNC_PY})
        + "---\n"
        + configmap("pipeline-install-config", {"appVersion": "2.3.0"})
        + PROFILE_CONTROLLER % env
    )


def test_kfp_profile_controller_image_from_code_default_and_configmap_version() -> None:
    got = found(kfp_profile_controller())
    locs = got["gcr.io/ml-pipeline/frontend:2.3.0"]
    assert locs[0][0] == "ConfigMap/kubeflow/kubeflow-pipelines-profile-controller-code-abcde12345"
    assert "KFP_VERSION<-ConfigMap/kubeflow/pipeline-install-config data.appVersion" in locs[0][1]
    assert locs[0][2] == "composed"


def test_kfp_profile_controller_env_overrides_the_code_default() -> None:
    env = (
        "        - {name: FRONTEND_IMAGE, value: harbor.local/kf/frontend}\n"
        "        - {name: FRONTEND_TAG, value: '2.3.0-fix'}\n"
    )
    got = found(kfp_profile_controller(env))
    assert "harbor.local/kf/frontend:2.3.0-fix" in got
    assert "gcr.io/ml-pipeline/frontend:2.3.0" not in got


def deployment(name: str, image: str, extra: str = "") -> str:
    return (
        textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}, namespace: kubeflow}}
        spec:
          template:
            spec:
              containers:
              - name: manager
                image: {image}
        """)
        + extra
    )


def test_compiled_default_used_unless_overridden_by_env_from_configmap() -> None:
    # KFP 2.3.0 reads V2_LAUNCHER_IMAGE (kubeflow/pipelines@2.3.0 container.go:34)
    api = "gcr.io/ml-pipeline/api-server:2.3.0"
    launcher = (
        "gcr.io/ml-pipeline/kfp-launcher@sha256:"
        "bef55a344574a25c557256d7c66cb19edacfd2008d694e5b6bb5b612d59feae0"
    )
    plain = found(deployment("ml-pipeline", api))
    assert plain[launcher][0][0] == "Deployment/kubeflow/ml-pipeline"
    assert plain[launcher][0][2] == "default"
    envfrom = (
        "        envFrom:\n        - configMapRef: {name: kfp-config-7hd244gf2d}\n---\n"
        + configmap("kfp-config-7hd244gf2d", {"V2_LAUNCHER_IMAGE": "reg.example/launcher:1"})
    )
    overridden = found(deployment("ml-pipeline", api, envfrom))
    assert launcher not in overridden
    assert "reg.example/launcher:1" in overridden
    assert any(i.startswith("gcr.io/ml-pipeline/kfp-driver@") for i in overridden)


def test_an_override_the_version_does_not_read_leaves_the_default() -> None:
    # tensorboard-controller before v1.6 hard-codes the image and never reads
    # TENSORBOARD_IMAGE (kubeflow/kubeflow@v1.4.0 tensorboard_controller.go:252)
    tb = "public.ecr.aws/j1r0q0g6/notebooks/tensorboard-controller:v1.4"
    envfrom = (
        "        envFrom:\n        - configMapRef: {name: tb-config-7hd244gf2d}\n---\n"
        + configmap("tb-config-7hd244gf2d", {"TENSORBOARD_IMAGE": "tensorflow/tensorflow:2.5.1"})
    )
    got = found(deployment("tb", tb, envfrom))
    assert got["docker.io/tensorflow/tensorflow:2.1.0"][0][2] == "default"
    assert "docker.io/tensorflow/tensorflow:2.5.1" in got  # named, so mirrored too
    # from v1.6 the env var is required and there is no compiled default at all
    v16 = found(deployment("tb", tb.replace(":v1.4", ":v1.6.0"), envfrom))
    assert "docker.io/tensorflow/tensorflow:2.1.0" not in v16


def test_compiled_default_follows_the_controller_version_and_flag_override() -> None:
    got = found(deployment("cert-manager", "quay.io/jetstack/cert-manager-controller:v1.3.1"))
    img = inventory(deployment("cert-manager", "quay.io/jetstack/cert-manager-controller:v1.3.1"))
    assert "quay.io/jetstack/cert-manager-acmesolver:v1.3.1" in got
    assert img.images[-1].canonical == "quay.io/jetstack/cert-manager-controller:v1.3.1"
    assert [i.optional for i in img.images] == [True, False]
    solver = "quay.io/jetstack/cert-manager-acmesolver:v1.3.1"
    flag = f"        args: ['--acme-http01-solver-image={solver}']\n"
    got = found(deployment("cert-manager", "quay.io/jetstack/cert-manager-controller:v1.3.1", flag))
    assert [loc[2] for loc in got["quay.io/jetstack/cert-manager-acmesolver:v1.3.1"]] == ["string"]


def test_bare_words_outside_containers_are_parts_not_images() -> None:
    values = {"pilot": {"image": "pilot", "hub": ""}, "cni": {"image": "install-cni"}}
    got = found(
        configmap("some-values", {"values": json.dumps(values)})
        + "---\n"
        + textwrap.dedent("""\
            apiVersion: v1
            kind: Pod
            metadata: {name: p, namespace: ns}
            spec:
              containers: [{name: c, image: busybox}]
            """)
    )
    assert set(got) == {"docker.io/library/busybox:latest"}
