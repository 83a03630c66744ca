"""The one reference parser: Docker grammar, normalisation, canonical form.

The property tests compare the parser with an oracle written straight from the grammar of
github.com/distribution/reference (regexp.go) plus go-digest's validation, on strings built
both from the grammar and from its near misses.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kferry.name import InvalidReference, Reference, canonical, parse

# --- oracle: distribution/reference regexp.go, transcribed ----------------------------------
ALNUM = r"[a-z0-9]+"
SEP = r"(?:[._]|__|[-]+)"
PATH_COMPONENT = rf"{ALNUM}(?:{SEP}{ALNUM})*"
DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN = rf"(?:{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
TAG = r"[\w][\w.-]{0,127}"
DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
NAME = rf"(?:{DOMAIN}/)?{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
REFERENCE = re.compile(rf"({NAME})(?::({TAG}))?(?:@({DIGEST}))?", re.ASCII)
GO_DIGEST = {"sha256": 64, "sha384": 96, "sha512": 128}


def split_docker_domain(name: str) -> tuple[str, str]:
    """normalize.go splitDockerDomain, transcribed."""
    i = name.find("/")
    first = name[:i]
    if i == -1 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = "docker.io", name
    else:
        domain, remainder = first, name[i + 1 :]
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    return domain, remainder


def oracle(s: str) -> bool:
    """normalize.go ParseNormalizedNamed + reference.go Parse + go-digest Validate."""
    if re.fullmatch(r"[a-f0-9]{64}", s):
        return False
    domain, remainder = split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        return False
    # Deliberately stricter than distribution: a first component that splitDockerDomain takes
    # as the registry host must be a valid host (distribution's regexp would then quietly read
    # "my_reg.local/x" as a host-less path, which no registry can serve).
    if domain != "docker.io" and not re.fullmatch(DOMAIN, domain):
        return False
    m = REFERENCE.fullmatch(f"{domain}/{remainder}")
    if m is None or len(m.group(1)) > 255:
        return False
    if m.group(3):
        algo, _, hexpart = m.group(3).partition(":")
        if GO_DIGEST.get(algo) != len(hexpart) or not re.fullmatch(r"[a-f0-9]+", hexpart):
            return False
    return True


def accepts(s: str) -> bool:
    try:
        parse(s)
    except InvalidReference:
        return False
    return True


# --- strategies built from the grammar ------------------------------------------------------
alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
separator = st.sampled_from([".", "_", "__", "-", "--"])
path_component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    alnum,
    st.lists(st.tuples(separator, alnum), max_size=2),
)
domain_component = st.from_regex(r"\A[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?\Z")
host = st.one_of(
    st.lists(domain_component, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["localhost", "[::1]", "[fe80::1]"]),
)
domain = st.builds(
    lambda h, p: h + (f":{p}" if p is not None else ""), host, st.none() | st.integers(0, 65535)
)
tag = st.from_regex(r"\A[\w][\w.-]{0,20}\Z").filter(str.isascii)
digest = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)
valid_reference = st.builds(
    lambda d, parts, t, dg: (
        (f"{d}/" if d else "") + "/".join(parts) + (f":{t}" if t else "") + (f"@{dg}" if dg else "")
    ),
    st.none() | domain,
    st.lists(path_component, min_size=1, max_size=4),
    st.none() | tag,
    st.none() | digest,
)
noise = st.text("aA0.-_:/@[]Z ", max_size=3)
mutated = st.builds(
    lambda s, i, n, cut: (s[:i] + n + s[i + cut :]) if s else n,
    valid_reference,
    st.integers(0, 80),
    noise,
    st.integers(0, 3),
)


@settings(max_examples=300)
@given(valid_reference)
def test_grammar_strings_are_accepted_like_the_oracle(s: str) -> None:
    assert accepts(s) == oracle(s), s


@pytest.mark.slow
@settings(max_examples=600)
@given(mutated)
def test_near_misses_are_judged_like_the_oracle(s: str) -> None:
    assert accepts(s) == oracle(s), s


@settings(max_examples=200)
@given(valid_reference)
def test_canonical_form_is_a_fixed_point_and_keeps_identity(s: str) -> None:
    if not oracle(s):
        return
    ref = parse(s)
    again = parse(ref.canonical)
    assert again.canonical == ref.canonical
    assert (again.domain, again.path, again.digest) == (ref.domain, ref.path, ref.digest)
    assert again.tag == (ref.tag if ref.tag or ref.digest else "latest")
    if ref.tag is None and ref.digest is None:
        assert ref.canonical.endswith(":latest")
    if ref.digest:
        assert ref.canonical.endswith("@" + ref.digest)


@pytest.mark.parametrize(
    ("written", "want"),
    [
        ("python:3.7", "docker.io/library/python:3.7"),
        ("python", "docker.io/library/python:latest"),
        ("kserve/agent:v0.16.0", "docker.io/kserve/agent:v0.16.0"),
        ("index.docker.io/istio/proxyv2:1.9.6", "docker.io/istio/proxyv2:1.9.6"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("localhost/foo", "localhost/foo:latest"),
        ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"),
        ("127.0.0.1:5001/kf/x@sha256:" + "a" * 64, "127.0.0.1:5001/kf/x@sha256:" + "a" * 64),
        ("[::1]:5000/foo:bar", "[::1]:5000/foo:bar"),
        ("gcr.io/a/b:1.0@sha256:" + "b" * 64, "gcr.io/a/b:1.0@sha256:" + "b" * 64),
        ("Registry.Example.com/kf/x", "Registry.Example.com/kf/x:latest"),
        ("localhost:5000", "docker.io/library/localhost:5000"),
    ],
)
def test_canonical(written: str, want: str) -> None:
    assert canonical(written) == want


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("", "empty"),
        ("UPPER", "lowercase"),
        ("gcr.io/Foo/bar", "lowercase"),
        ("a//b", "invalid repository path"),
        ("x:", "invalid tag"),
        ("x:-1", "invalid tag"),
        ("x:" + "a" * 129, "invalid tag"),
        ("@sha256:" + "a" * 64, "without a repository"),
        ("x@sha256:abc", "invalid digest"),
        ("x@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("x@sha256:" + "A" * 64, "lowercase hex"),
        ("a b", "whitespace"),
        (" a", "whitespace"),
        ("host:port/x", "invalid registry host"),
        ("$(IMAGE)", "invalid repository path"),
        ("{{ .Values.image }}", "whitespace"),
        ("a" * 64, "image ID"),
        ("a/" + "b" * 260, "longer than 255"),
        ("b" * 240, "longer than 255"),  # docker.io/library/ counts
    ],
)
def test_rejected_with_a_reason(written: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse(written)
    assert reason in info.value.reason
    assert written in str(info.value) or written == ""


def test_parts() -> None:
    ref = parse("harbor.local:8443/kf/gcr.io/knative-releases/queue:v1@sha256:" + "c" * 64)
    assert ref == Reference(
        "harbor.local:8443", "kf/gcr.io/knative-releases/queue", "v1", "sha256:" + "c" * 64
    )
    assert ref.repository == "harbor.local:8443/kf/gcr.io/knative-releases/queue"
    assert ref.identifier == "sha256:" + "c" * 64
    assert parse("busybox").identifier == "latest"
