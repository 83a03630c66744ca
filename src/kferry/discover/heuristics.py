"""When is a string an image reference? Key names, placeholders and look-alikes.

Discovery never treats "any string that parses" as an image (``info``, ``pods/log`` and
``mysql:3306`` all parse). A string is a candidate only where its *context* says image: a
container ``image`` field, a key, env var or flag whose name ends in ``image``/``images``, or a
collection held under such a key (Jupyter spawner ``image.options``). A bare word (``proxyv2``)
under an ``image`` key counts only in a container (a mapping with a ``name``): elsewhere it is
one part of a composed image, as in helm-style values. Inside collections the
test is stricter (:func:`looks_like_image`): it must name a repository path or a tag/digest and
must not be a ``host:port`` or a URL.
"""

from __future__ import annotations

import re

from kferry.name import Reference, try_parse

_NORMALISE = re.compile(r"[^a-z0-9]")
_PLACEHOLDER = re.compile(r"\$\(|\$\{|\{\{|\}\}|<[^>]*>|%\(|^\$[A-Za-z_]")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# flags whose value is an image: --executor-image=X, --kubectl-delivery-image X, -image X
_FLAG = re.compile(r"^--?([A-Za-z0-9][A-Za-z0-9_.-]*)(?:=(.*))?$", re.S)


def normalise_key(key: str) -> str:
    """``queue-sidecar-image`` / ``TENSORBOARD_IMAGE`` / ``cacheImage`` -> ``...image``."""
    return _NORMALISE.sub("", key.lower())


def is_image_key(key: str) -> bool:
    """A key, env var or flag name whose scalar value is an image reference."""
    k = normalise_key(key)
    return k.endswith(("image", "images")) and not k.endswith("pullimage")


def is_image_collection_key(key: str) -> bool:
    """A key whose mapping/list value holds image references (``image``, ``imageGroupOne``)."""
    k = normalise_key(key)
    if k.startswith("imagepull"):
        return False
    return k.startswith("image") or k.endswith(("image", "images"))


def is_placeholder(text: str) -> bool:
    """Template variables and documentation placeholders: ``$(IMAGE)``, ``{{ .Image }}``."""
    return bool(_PLACEHOLDER.search(text))


def is_bare_word(text: str) -> bool:
    """No registry, path, tag or digest: ``proxyv2``, ``pilot`` (helm values name parts so)."""
    return not any(c in text for c in "/:@")


def flag_name(arg: str) -> tuple[str, str | None] | None:
    """``--executor-image=X`` -> ``("executor-image", "X")``; ``--flag`` -> ``("flag", None)``."""
    m = _FLAG.match(arg)
    if m is None:
        return None
    return m.group(1), m.group(2)


def looks_like_image(text: str) -> Reference | None:
    """A strict test for strings found without a decisive key (list items, text lines)."""
    if not text or is_placeholder(text) or _URL.match(text) or text.startswith("/"):
        return None
    ref = try_parse(text)
    if ref is None:
        return None
    has_path = "/" in text.split("@", 1)[0]
    if not has_path and ref.tag is None and ref.digest is None:
        return None  # a bare word: "regcred", "Always", "info"
    host_like = "." in ref.path or ref.path.endswith("/localhost")
    if not has_path and ref.tag is not None and ref.tag.isdigit() and host_like:
        return None  # host:port, e.g. "minio-service.kubeflow:9000"
    return ref
