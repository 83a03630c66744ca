"""Rewrite every discovered reference to its planned target, changing nothing else.

Each finding says where its characters are (:class:`~kferry.discover.model.Part`): a field,
a string inside a JSON/YAML document inside a ConfigMap value, a flag value, or the parts of
a composed image. Those ranges are replaced in the original text; composed images are
rewritten at their parts (istio ``hub`` and image name, KServe ``image``, the KFP profile
controller's default repository) so that the composed result is the target. Compiled-in
defaults get the override their component offers (a flag or env var); those with none are
reported as needing node mirror configuration (``kferry mirror-config``).
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from kferry.discover.model import Finding, Part
from kferry.errors import InputError
from kferry.load.source import Source
from kferry.name import Reference
from kferry.plan import Lock, Target, plan, plan_one
from kferry.rewrite.edits import Edit, Locator
from kferry.rewrite.insert import set_args, set_envs
from kferry.rewrite.textmap import LineIndex


class RewriteError(InputError):
    """A reference that cannot be rewritten in place (nothing is written)."""


class Targeter:
    """Source reference -> the text to write for its target (plan, lock, ``--pin-digests``)."""

    def __init__(self, to: Target, lock: Lock | None, pin: bool) -> None:
        self.to, self.lock, self.pin = to, lock or Lock(), pin

    def check(self, sources: Iterable[Reference]) -> None:
        plan(sources, self.to)  # collisions are an error naming both sources

    def target(self, source: Reference) -> Reference:
        entry = self.lock.entry(source)
        target = entry.target if entry is not None else plan_one(source, self.to)
        if self.pin:
            if entry is None:
                raise RewriteError(
                    f"--pin-digests: {source.canonical} is not in the lock file; "
                    "run kferry mirror (or bundle load) first"
                )
            target = target.with_digest(entry.digest)
        return target

    def text(self, source: Reference) -> str:
        return self.target(source).canonical

    def check_lock(self, sources: Iterable[Reference], name: str) -> None:
        """The lock given with ``--lock`` belongs to this render and this ``--to``: it records
        at least one of the render's images, and each one it records sits where ``--to`` and
        ``--layout`` plan it. Otherwise the rewrite would point at places that hold nothing,
        or other than the user said, and still report success: bad input, exit 2."""
        refs = list({r.canonical: r for r in sources}.values())
        if not refs:
            return
        recorded = [(r, e) for r in refs if (e := self.lock.entry(r)) is not None]
        if not recorded:
            raise RewriteError(
                f"--lock {name}: records none of the {len(refs)} images of this render "
                f"({len(self.lock)} entries, e.g. {next(iter(self.lock), 'none')}): it is the "
                "lock of another copy; give the lock that kferry mirror or bundle load wrote "
                "for these images"
            )
        wrong = [
            (r, e.target, planned)
            for r, e in recorded
            if e.target.repository != (planned := plan_one(r, self.to)).repository
        ]
        if wrong:
            source, there, planned = wrong[0]
            raise RewriteError(
                f"--lock {name}: {len(wrong)} of the {len(recorded)} images it records for this "
                f"render are not where --to {self.to} --layout {self.to.layout} puts them, e.g. "
                f"{source.canonical} is at {there.repository}, not {planned.repository}: pass "
                "the --to and --layout of that copy, or the lock of a copy to this --to"
            )


@dataclass
class Plan:
    """Edits per source, and what could not be rewritten in the manifests."""

    edits: dict[str, list[Edit]] = field(default_factory=lambda: defaultdict(list))
    rewritten: int = 0
    needs_mirror_config: list[Finding] = field(default_factory=list)
    overridden: list[Finding] = field(default_factory=list)


def _new_parts(f: Finding, target: Reference, targeter: Targeter) -> list[tuple[Part, str, str]]:
    """(part, old text, new text) for every part of a finding that changes."""
    out: list[tuple[Part, str, str]] = []
    roles = {p.role: p for p in f.location.parts}
    if f.location.how != "composed":
        for p in f.location.parts:
            out.append((p, f.written, targeter.text(f.reference) if f.reference else f.written))
        return out
    if "ref" in roles:
        out.append((roles["ref"], roles["ref"].node.value, target.canonical))
    elif "hub" in roles:
        hub, image = roles["hub"], roles["image"]
        if posixpath.basename(target.path) == image.node.value:
            out.append((hub, hub.node.value, f"{target.domain}/{posixpath.dirname(target.path)}"))
        else:
            # the name itself changes (flat layout): an image holding a "/" is used as the
            # whole reference (istio ProxyImage / charts' `contains "/"`), hub and tag unused
            out.append((image, image.node.value, target.canonical))
    elif "image" in roles:
        image = roles["image"]
        old = image.node.value if image.span is None else image.node.value[slice(*image.span)]
        out.append((image, old, target.repository))
    return [(p, old, new) for p, old, new in out if old != new]


def plan_rewrite(findings: list[Finding], targeter: Targeter, locators: dict[str, Locator]) -> Plan:
    result = Plan()
    refs = [f.reference for f in findings if f.reference is not None]
    targeter.check(refs)
    problems: list[str] = []
    overrides: dict[tuple[str, int, str], list[Finding]] = {}
    for f in findings:
        loc = f.location
        owner = loc.owner
        if f.reference is None or owner is None:
            continue
        source = owner.document.source.name
        locator = locators[source]
        if loc.how == "default":
            if f.override is None:
                result.needs_mirror_config.append(f)
            else:
                key = (source, id(f.override.container), f.override.kind)
                overrides.setdefault(key, []).append(f)
            continue
        target = targeter.target(f.reference)
        for part, old, new in _new_parts(f, target, targeter):
            rng = locator.locate(part)
            if rng is not None and locator.index.text[rng[0] : rng[1]] == old:
                result.edits[source].append(Edit(rng[0], rng[1], new, "rewrite"))
                continue
            spots = (
                locator.occurrences(part, old)
                if part.role in ("ref", "image") and ("/" in old or ":" in old)
                else []
            )
            if not spots:
                problems.append(f"{loc.object} {loc.path}: cannot find {old!r} in {source}")
                continue
            result.edits[source].extend(Edit(a, b, new, "rewrite") for a, b in spots)
        result.rewritten += 1
    for (source, _, kind), group in overrides.items():
        container = group[0].override.container  # type: ignore[union-attr]
        pairs = [
            (f.override.name, targeter.text(f.reference))  # type: ignore[union-attr,arg-type]
            for f in group
        ]
        setter = set_envs if kind == "env" else set_args
        edit = setter(locators[source].index, container, pairs, "rewrite")
        if edit is None:
            result.needs_mirror_config.extend(group)
            continue
        result.edits[source].append(edit)
        result.overridden.extend(group)
    if problems:
        raise RewriteError("; ".join(problems))
    return result


def locators_for(sources: Iterable[Source]) -> dict[str, Locator]:
    return {s.name: Locator(LineIndex(s.text)) for s in sources}
