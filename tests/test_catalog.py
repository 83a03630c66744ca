"""The catalog is data: every entry is well-formed, cited, and its images parse."""

from __future__ import annotations

import re

from kferry.catalog import load_catalog
from kferry.catalog.defaults import parse_version
from kferry.catalog.model import name_matches
from kferry.name import parse


def test_every_default_rule_names_a_valid_image_and_cites_every_tag_it_covers() -> None:
    catalog = load_catalog()
    assert catalog.defaults
    for entry in catalog.defaults:
        assert entry.component.images and entry.rules, entry.id
        for rule in entry.rules:
            if rule.image is not None:
                parse(rule.image.replace("{tag}", "v1.0.0"))
            # read at the tags themselves, both ends included: no "unverified" rule
            assert rule.at, (entry.id, rule.span)
            assert rule.at[0][0] == rule.first and rule.at[-1][0] == rule.last, rule.span
            for tag, where in rule.at:
                assert re.fullmatch(r"[\w./-]+:\d+(-\d+)?|[\w./-]+", where.split(" ")[0]), where
                cite = rule.citation(parse_version(tag))
                assert re.match(rf"^[\w.-]+/[\w.-]+@{re.escape(tag)} ", cite), cite
        if entry.override is not None:  # None: nothing replaces it (node mirror configuration)
            assert entry.override.source, entry.id
        assert "unverified" not in repr(entry).lower(), entry.id


def test_every_composed_recipe_cites_a_source() -> None:
    for recipe in load_catalog().composed:
        assert re.match(r"^[\w.-]+/[\w.-]+@", recipe.source), recipe.id


def test_commit_tags_are_placed_on_the_release_line() -> None:
    to = next(c for c in load_catalog().components if c.id == "training-operator")
    # kubeflow/trainer@v1.3.0 and @v1.8.1 manifests/overlays/standalone/kustomization.yaml
    v130 = parse_version("1.3.0")
    assert to.place("760ac1171dd30039a7363ffa03c77454bd714da5") == (v130, "commit")
    assert to.place("v1-04f9f13") == (parse_version("1.8.1"), "commit")
    assert to.place("v1-3f15cb8") == (parse_version("1.9.2"), "commit")
    assert to.place("v1-abcdef1") == (None, "unplaced")
    assert to.place("v1.9.4") == (parse_version("1.9.4"), "tag")
    assert to.place("latest") == (None, "unplaced")


def test_versions_and_hashed_names() -> None:
    assert parse_version("v1.9.2") is not None
    assert str(parse_version("2.0.0-alpha.5")) == "2.0.0a5"
    assert parse_version("v1-04f9f13") is None
    assert name_matches("pipeline-install-config", "pipeline-install-config")
    assert name_matches("tb-config", "tb-config-7hd244gf2d")
    assert not name_matches("tb-config", "tb-config-extra")
