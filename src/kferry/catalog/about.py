"""The catalog's date and coverage (``kferry --version``), from ``catalog/data/about.yaml``
and the defaults file, read without building the whole catalog."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import yaml


@dataclass(frozen=True, slots=True)
class About:
    date: str
    releases: tuple[str, ...]
    components: int
    defaults: int

    @property
    def coverage(self) -> str:
        return (
            f"Kubeflow {', '.join(self.releases)}; compiled-in defaults of "
            f"{self.components} components ({self.defaults} images)"
        )


def _load(name: str) -> dict[str, object]:
    text = resources.files("kferry.catalog").joinpath("data", name).read_text("utf-8")
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return data if isinstance(data, dict) else {}


def about() -> About:
    info, defaults = _load("about.yaml"), _load("defaults.yaml")
    releases = info.get("releases")
    comps, entries = defaults.get("components"), defaults.get("defaults")
    return About(
        date=str(info.get("date", "unknown")),
        releases=tuple(str(r) for r in releases) if isinstance(releases, list) else (),
        components=len(comps) if isinstance(comps, list) else 0,
        defaults=len(entries) if isinstance(entries, list) else 0,
    )
