"""The catalog is data: every entry is well-formed, cited, and its images parse."""

from __future__ import annotations

import re

import pytest

from kferry.catalog import load_catalog
from kferry.catalog.model import name_matches, parse_version
from kferry.name import parse


def test_every_default_rule_names_a_valid_image_and_cites_a_source() -> None:
    catalog = load_catalog()
    assert catalog.defaults
    for entry in catalog.defaults:
        assert entry.images and entry.rules, entry.id
        for rule in entry.rules:
            parse(rule.image.replace("{tag}", "v1.0.0"))
            assert re.match(r"^[\w.-]+/[\w.-]+", rule.source), (entry.id, rule.source)


def test_every_composed_recipe_cites_a_source() -> None:
    for recipe in load_catalog().composed:
        assert re.match(r"^[\w.-]+/[\w.-]+@", recipe.source), recipe.id


@pytest.mark.parametrize(
    ("entry", "tag", "want"),
    [
        ("training-operator-pytorch-init", "760ac1171dd30039a7363ffa03c77454bd714da5", None),
        ("training-operator-pytorch-init", "v1-e1434f6", "alpine:3.10"),
        ("training-operator-pytorch-init", "v1.8.1", "alpine:3.10"),
        (
            "training-operator-mpi-kubectl-delivery",
            "v1-855e096",
            "mpioperator/kubectl-delivery:latest",
        ),
        (
            "training-operator-mpi-kubectl-delivery",
            "v1-04f9f13",
            "kubeflow/kubectl-delivery:latest",
        ),
        ("kfp-v2-launcher", "1.7.0", None),
        ("kfp-v2-launcher", "2.3.0", "gcr.io/ml-pipeline/kfp-launcher@sha256:"),
        ("tensorboard-server-image", "v1.4", "tensorflow/tensorflow:2.1.0"),
        ("tensorboard-server-image", "v1.9.2", None),
        ("pvcviewer-default-viewer", "v1.7.0", None),
        ("pvcviewer-default-viewer", "v1.10.0", "filebrowser/filebrowser:latest"),
    ],
)
def test_rules_follow_the_component_version(entry: str, tag: str, want: str | None) -> None:
    e = next(d for d in load_catalog().defaults if d.id == entry)
    rule = e.rule_for(tag)
    if want is None:
        assert rule is None
    else:
        assert rule is not None and rule.image.startswith(want)


def test_versions_and_hashed_names() -> None:
    assert parse_version("v1.9.2") is not None
    assert str(parse_version("2.0.0-alpha.5")) == "2.0.0a5"
    assert parse_version("v1-04f9f13") is None
    assert name_matches("pipeline-install-config", "pipeline-install-config")
    assert name_matches("tb-config", "tb-config-7hd244gf2d")
    assert not name_matches("tb-config", "tb-config-extra")
