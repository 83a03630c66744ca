"""The Jupyter web app's image lists (``spawner_ui_config.yaml``): read, edit in place, apply.

The web app reads ``/etc/config/spawner_ui_config.yaml`` (kubeflow/kubeflow@v1.4.0
components/crud-web-apps/jupyter/backend/apps/common/utils.py:21), which its Deployment
mounts from a ConfigMap that kustomize's ``configMapGenerator`` names with a hash suffix
(``jupyter-web-app-config-76844k4cd7``; kubeflow/kubeflow@v1.4.0
components/crud-web-apps/jupyter/manifests/base/kustomization.yaml:34). The ConfigMap is found
through the Deployment's volumes, so any generated name works. Under ``spawnerFormDefaults``
the three groups have the same shape in every release since 1.4 (``image``, ``imageGroupOne``
for VSCode-like, ``imageGroupTwo`` for RStudio-like servers, each with ``value`` and
``options``: kubeflow/kubeflow@v1.4.0 .../configs/spawner_ui_config.yaml:18,28,37;
kubeflow/kubeflow@v1.10.0 same file:38,62,83; kubeflow/notebooks@v1.11.0 same file:38,61,82).

The file is a page of comments for the admin, so it is edited as text: libyaml's node marks
say where the ``options`` sequence and its items are, and only those lines change (a block
item is inserted or deleted as a line with the neighbours' indentation; a flow sequence is
rewritten in place). The result is parsed again and must equal the intended change. The
ConfigMap is then applied server side (field manager ``kferry``, the read resourceVersion as a
precondition, so a concurrent edit is a conflict and not overwritten), and the Deployment is
restarted (``kubectl rollout restart``'s annotation) so every replica reads the new file.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from kferry.errors import InputError, KferryError
from kferry.kube import Kube, KubeError
from kferry.rewrite.textmap import LineIndex

KEY = "spawner_ui_config.yaml"
DEFAULT_NAMESPACE = "kubeflow"
DEPLOYMENT = "jupyter-web-app-deployment"
APP_LABEL = "app=jupyter-web-app"
GROUPS = {"jupyter": "image", "vscode": "imageGroupOne", "rstudio": "imageGroupTwo"}
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

Obj = dict[str, Any]


@dataclass
class Spawner:
    kube: Kube
    namespace: str
    deployment: Obj | None
    configmap: Obj
    text: str

    @property
    def name(self) -> str:
        return str(self.configmap["metadata"]["name"])

    @property
    def where(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name} {KEY}"

    def config(self) -> Obj:
        try:
            doc = yaml.safe_load(self.text)
        except yaml.YAMLError as exc:
            raise KferryError(f"{self.where}: not YAML: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("spawnerFormDefaults"), dict):
            raise KferryError(f"{self.where}: no spawnerFormDefaults mapping")
        return doc

    def groups(self) -> dict[str, tuple[str | None, list[str]]]:
        """group -> (default image, options) for the groups the file has."""
        defaults = self.config()["spawnerFormDefaults"]
        out: dict[str, tuple[str | None, list[str]]] = {}
        for group, key in GROUPS.items():
            section = defaults.get(key)
            if not isinstance(section, dict):
                continue
            value = section.get("value")
            options = section.get("options") or []
            out[group] = (
                str(value) if value is not None else None,
                [str(o) for o in options] if isinstance(options, list) else [],
            )
        return out


def _mounted_configmaps(deployment: Obj) -> list[str]:
    volumes = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
    return [str(v["configMap"]["name"]) for v in volumes if (v.get("configMap") or {}).get("name")]


def read(kube: Kube, namespace: str, configmap: str | None = None) -> Spawner:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT}")
    if deployment is None:
        found = (
            kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments", labelSelector=APP_LABEL)
            or {}
        ).get("items") or []
        deployment = found[0] if len(found) == 1 else None
    candidates: list[Obj] = []
    if configmap is not None:
        cm = kube.get(f"{base}/{configmap}")
        if cm is None:
            raise KferryError(f"no ConfigMap {namespace}/{configmap}")
        candidates = [cm]
    elif deployment is not None:
        for name in _mounted_configmaps(deployment):
            cm = kube.get(f"{base}/{name}")
            if cm is not None and KEY in (cm.get("data") or {}):
                candidates.append(cm)
    else:
        items = (kube.get(base) or {}).get("items") or []
        candidates = [cm for cm in items if KEY in (cm.get("data") or {})]
    if not candidates:
        raise KferryError(
            f"no ConfigMap with {KEY} in namespace {namespace} (mounted by Deployment "
            f"{DEPLOYMENT}): is the Jupyter web app installed there? (--namespace names another)"
        )
    if len(candidates) > 1:
        names = ", ".join(str(c["metadata"]["name"]) for c in candidates)
        raise KferryError(f"several ConfigMaps hold {KEY} ({names}): name one with --configmap")
    cm = candidates[0]
    text = (cm.get("data") or {}).get(KEY)
    if not isinstance(text, str):
        raise KferryError(f"ConfigMap {namespace}/{cm['metadata']['name']} has no key {KEY}")
    return Spawner(kube, namespace, deployment, cm, text)


# -- text edits --------------------------------------------------------------------------------


def _find(mapping: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(mapping, yaml.MappingNode):
        return None
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            node: yaml.Node = v
            return node
    return None


def _options_node(text: str, group: str, where: str) -> yaml.SequenceNode:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise KferryError(f"{where}: not YAML: {exc}") from None
    defaults = _find(root, "spawnerFormDefaults") if root is not None else None
    section = _find(defaults, GROUPS[group]) if defaults is not None else None
    if section is None:
        raise KferryError(f"{where}: no spawnerFormDefaults.{GROUPS[group]} ({group} images)")
    options = _find(section, "options")
    if not isinstance(options, yaml.SequenceNode):
        raise KferryError(
            f"{where}: spawnerFormDefaults.{GROUPS[group]}.options is not a list; add one there"
        )
    return options


def _scalar(image: str) -> str:
    """The image as a YAML scalar: plain when that reads back as the same string."""
    try:
        if yaml.safe_load(image) == image and "#" not in image:
            return image
    except yaml.YAMLError:
        pass
    return json.dumps(image)


def _flow(items: list[str]) -> str:
    return "[" + ", ".join(_scalar(i) for i in items) + "]"


def edit_add(text: str, group: str, image: str, where: str) -> str:
    node = _options_node(text, group, where)
    index = LineIndex(text)
    items = [str(i.value) for i in node.value if isinstance(i, yaml.ScalarNode)]
    if node.flow_style or not node.value:
        a = index.offset(node.start_mark.line, node.start_mark.column)
        b = index.offset(node.end_mark.line, node.end_mark.column)
        return text[:a] + _flow([*items, image]) + text[b:]
    last = node.value[-1]
    line_start = index.starts[last.start_mark.line]
    prefix = text[line_start : index.offset(last.start_mark.line, last.start_mark.column)]
    if prefix.strip() != "-":
        raise KferryError(f"{where}: {GROUPS[group]}.options items are not one per line")
    end_line = last.end_mark.line if last.end_mark.column > 0 else last.end_mark.line - 1
    at = index.line_end(end_line)
    newline = "" if at == 0 or text[at - 1] == "\n" else "\n"
    return text[:at] + newline + prefix + _scalar(image) + "\n" + text[at:]


def edit_remove(text: str, group: str, image: str, where: str) -> str:
    node = _options_node(text, group, where)
    index = LineIndex(text)
    items = [i for i in node.value if isinstance(i, yaml.ScalarNode)]
    keep = [str(i.value) for i in items if i.value != image]
    if node.flow_style:
        a = index.offset(node.start_mark.line, node.start_mark.column)
        b = index.offset(node.end_mark.line, node.end_mark.column)
        return text[:a] + _flow(keep) + text[b:]
    out = text
    for item in reversed([i for i in items if i.value == image]):
        start = index.starts[item.start_mark.line]
        end_line = item.end_mark.line if item.end_mark.column > 0 else item.end_mark.line - 1
        if text[start : index.offset(item.start_mark.line, item.start_mark.column)].strip() != "-":
            raise KferryError(f"{where}: {GROUPS[group]}.options items are not one per line")
        out = out[:start] + out[index.line_end(end_line) :]
    return out


def _expect(old: Obj, group: str, options: list[str]) -> Obj:
    want = copy.deepcopy(old)
    want["spawnerFormDefaults"][GROUPS[group]]["options"] = options
    return want


# -- commands ----------------------------------------------------------------------------------


@dataclass
class Change:
    action: str  # added | removed | unchanged | absent
    group: str
    image: str
    configmap: str
    namespace: str
    restarted: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "group": self.group,
            "image": self.image,
            "configmap": f"{self.namespace}/{self.configmap}",
            "restarted": self.restarted,
            "notes": self.notes,
        }


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise InputError(f"--group {group}: one of {', '.join(GROUPS)}")


def add(
    kube: Kube,
    image: str,
    group: str = "jupyter",
    *,
    namespace: str = DEFAULT_NAMESPACE,
    configmap: str | None = None,
    restart: bool = True,
) -> Change:
    _check_group(group)
    spawner = read(kube, namespace, configmap)
    old = spawner.config()
    _default, options = spawner.groups().get(group, (None, []))
    change = Change("unchanged", group, image, spawner.name, namespace)
    if image in options:
        return change
    new_text = edit_add(spawner.text, group, image, spawner.where)
    _verify(spawner, new_text, _expect(old, group, [*options, image]))
    _apply(spawner, new_text)
    change.action = "added"
    change.restarted = restart and _restart(spawner, change)
    return change


def remove(
    kube: Kube,
    image: str,
    group: str | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    configmap: str | None = None,
    restart: bool = True,
) -> Change:
    if group is not None:
        _check_group(group)
    spawner = read(kube, namespace, configmap)
    groups = spawner.groups()
    holding = [g for g, (_, opts) in groups.items() if image in opts and group in (None, g)]
    change = Change("absent", group or "", image, spawner.name, namespace)
    if not holding:
        return change
    text = spawner.text
    want = spawner.config()
    for g in holding:
        default, options = groups[g]
        if default == image:
            raise InputError(
                f"{image} is the default image of the {g} group ({GROUPS[g]}.value in "
                f"{spawner.where}): change the default first"
            )
        keep = [o for o in options if o != image]
        if not keep:
            raise InputError(f"{image} is the only {g} image in {spawner.where}: add another first")
        text = edit_remove(text, g, image, spawner.where)
        want = _expect(want, g, keep)
    _verify(spawner, text, want)
    _apply(spawner, text)
    change.action, change.group = "removed", ",".join(holding)
    change.restarted = restart and _restart(spawner, change)
    return change


def _verify(spawner: Spawner, text: str, want: Obj) -> None:
    try:
        got = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # pragma: no cover - a bug in the edit, never the input
        raise KferryError(
            f"{spawner.where}: the edit would break the file ({exc}); not applied"
        ) from None
    if got != want:
        raise KferryError(f"{spawner.where}: the edit would change more than the list; not applied")


def _apply(spawner: Spawner, text: str) -> None:
    meta = spawner.configmap["metadata"]
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": meta["name"],
            "namespace": spawner.namespace,
            "resourceVersion": meta.get("resourceVersion"),
        },
        "data": {KEY: text},
    }
    try:
        spawner.kube.request(
            "PATCH",
            f"/api/v1/namespaces/{spawner.namespace}/configmaps/{meta['name']}",
            body=body,
            params={"fieldManager": "kferry", "force": "true"},
            content_type="application/apply-patch+yaml",
        )
    except KubeError as exc:
        if exc.status == 409:
            raise KferryError(
                f"{spawner.where} changed while kferry edited it: run the command again"
            ) from None
        raise


def _restart(spawner: Spawner, change: Change) -> bool:
    dep = spawner.deployment
    if dep is None:
        change.notes.append("no jupyter-web-app Deployment found to restart")
        return False
    path = f"/apis/apps/v1/namespaces/{spawner.namespace}/deployments/{dep['metadata']['name']}"
    template = dep.get("spec", {}).get("template", {})
    previous = (template.get("metadata") or {}).get("annotations", {}).get(RESTARTED_AT)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    while now == previous:
        time.sleep(0.2)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    spawner.kube.request(
        "PATCH", path, body=body, content_type="application/strategic-merge-patch+json"
    )
    return True


def listing(
    kube: Kube, *, namespace: str = DEFAULT_NAMESPACE, configmap: str | None = None
) -> tuple[Spawner, dict[str, tuple[str | None, list[str]]]]:
    spawner = read(kube, namespace, configmap)
    return spawner, spawner.groups()
