"""Dex's config.yaml edited in place: every byte outside the changed entry stays."""

from __future__ import annotations

import pytest
import yaml

from kferry.users.dexconfig import DexConfigText, scalar

# Comments everywhere, a connector, static clients, keys kferry does not know, odd quoting.
CONFIG = """\
# Dex for the lab (managed by hand, do not reformat)
issuer: http://dex.auth.svc.cluster.local:5556/dex
storage:
  type: kubernetes
  config: {inCluster: true}   # flow style on purpose
web:
  http: 0.0.0.0:5556
frobnicate:          # a key this kferry does not know
  level: 11
connectors:
- type: ldap
  id: corp
  name: 'Corp LDAP'
  config:
    host: ldap.corp.example:636
    bindPW: $LDAP_PASSWORD
enablePasswordDB: true
staticPasswords:
    # the admins
    -   email: "admin@example.com"
        hash: "$2y$12$4K/VkmDd1q1Orb3xAt82zu8gk7Ad6ReFR4LCP9UeYE90NLiN9Df72"
        # FIXME: rotate
        username: admin
        userID: "15841185641784"
    -   email: ops@example.com    # on call
        hashFromEnv: DEX_OPS_PASSWORD
        username: ops
        userID: "2"
    # end of the admins
staticClients:
# https://github.com/dexidp/dex/pull/1664
- idEnv: OIDC_CLIENT_ID
  redirectURIs: ["/oauth2/callback"]
  name: 'Dex Login Application'
  secretEnv: OIDC_CLIENT_SECRET
"""

NEW = [
    ("email", "alice@example.com"),
    ("hash", "$2b$12$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWX"),
    ("username", "alice"),
    ("userID", "0c8cbd2a-6a53-5b5d-9a3e-3f9b3b4f6f10"),
]


def entries(text: str) -> list[dict[str, str]]:
    return list(yaml.safe_load(text)["staticPasswords"] or [])


def test_add_inserts_one_entry_and_keeps_every_other_byte() -> None:
    added = DexConfigText(CONFIG).add(NEW)
    assert added is not None
    assert entries(added)[-1] == dict(NEW)
    assert entries(added)[:2] == entries(CONFIG)
    # the only difference is the new entry's lines, right after the last entry
    at = CONFIG.index("    # end of the admins")
    inserted = added[at : at + len(added) - len(CONFIG)]
    assert added == CONFIG[:at] + inserted + CONFIG[at:]
    assert inserted.splitlines()[0] == "    -   email: alice@example.com"
    assert all(line.startswith("        ") for line in inserted.splitlines()[1:])


def test_remove_after_add_gives_back_the_file_byte_for_byte() -> None:
    added = DexConfigText(CONFIG).add(NEW)
    assert added is not None
    removed = DexConfigText(added).remove(2)
    assert removed == CONFIG


def test_remove_takes_the_entry_lines_only() -> None:
    removed = DexConfigText(CONFIG).remove(0)
    assert removed is not None
    start = CONFIG.index('    -   email: "admin@example.com"')
    end = CONFIG.index("    -   email: ops@example.com")
    assert removed == CONFIG[:start] + CONFIG[end:]
    assert [e["email"] for e in entries(removed)] == ["ops@example.com"]
    assert "# FIXME: rotate" not in removed and "# the admins" in removed


def test_update_replaces_values_where_they_are_written() -> None:
    updated = DexConfigText(CONFIG).update(
        1, [("hash", NEW[1][1]), ("username", "oncall")], ["hashFromEnv"]
    )
    assert updated is not None
    assert entries(updated)[1] == {
        "email": "ops@example.com",
        "username": "oncall",
        "userID": "2",
        "hash": NEW[1][1],
    }
    assert "    -   email: ops@example.com    # on call\n" in updated
    # the first entry's hash keeps its quotes when replaced
    first = DexConfigText(CONFIG).update(0, [("hash", NEW[1][1])])
    assert first is not None
    assert first == CONFIG.replace(entries(CONFIG)[0]["hash"], NEW[1][1])
    assert "# FIXME: rotate" in first


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("issuer: x\nstaticPasswords: []\n", "issuer: x\nstaticPasswords: [{email: a@b.c}]\n"),
        ("issuer: x\nstaticPasswords:\n# none yet\n",
         "issuer: x\nstaticPasswords:\n- email: a@b.c\n# none yet\n"),
        ("issuer: x  # only this\n", "issuer: x  # only this\nstaticPasswords:\n- email: a@b.c\n"),
    ],
)  # fmt: skip
def test_add_where_there_is_no_entry_yet(text: str, expected: str) -> None:
    assert DexConfigText(text).add([("email", "a@b.c")]) == expected


def test_layouts_not_edited_in_place_say_so() -> None:
    flow = "staticPasswords: [{email: a@b.c}]\n"
    assert DexConfigText(flow).remove(0) is None
    assert DexConfigText(flow).update(0, [("hash", "x")]) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("user@example.com", "user@example.com"),
        ("$2b$12$abc/def.ghi", "$2b$12$abc/def.ghi"),
        ("15841185641784", '"15841185641784"'),
        ("true", '"true"'),
        ("a: b", '"a: b"'),
        ("#x", '"#x"'),
    ],
)
def test_scalar_reads_back_as_the_same_string(value: str, text: str) -> None:
    assert scalar(value) == text
    assert yaml.safe_load(f"k: {text}") == {"k": value}
