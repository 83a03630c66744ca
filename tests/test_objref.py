"""The one ``Kind/namespace/name`` formatter every stage names objects with."""

from __future__ import annotations

from kferry.objref import object_ref, ref_of


def test_object_ref_parts() -> None:
    assert object_ref("Deployment", "kubeflow", "dex") == "Deployment/kubeflow/dex"
    assert object_ref("ClusterRole", None, "admin") == "ClusterRole//admin"
    assert object_ref("ConfigMap", "", None) == "ConfigMap//"


def test_ref_of_plain_dicts() -> None:
    assert ref_of({"kind": "Pod", "metadata": {"namespace": "a", "name": "p"}}) == "Pod/a/p"
    assert ref_of({"metadata": {"name": "p"}}, "Pod") == "Pod//p"
    assert ref_of({"kind": "Service", "metadata": "junk"}) == "Service//"
    assert ref_of({"metadata": {"name": "x", "namespace": None}}) == "//x"
