"""Kubeflow users: a ``Profile`` (and so a namespace) and a Dex static password each.

``names`` derives the Profile name, Dex userID and env key from an email; ``passwords``
reads and hashes passwords (bcrypt, cost 12); ``profiles`` speaks to the Profile API in the
version the cluster serves; ``dex`` reads and edits Dex's static passwords in either Kubeflow
layout (inline ``hash``, or ``hashFromEnv`` with a Secret); ``service`` runs add, list and
remove, with the rollback and the Dex restart.
"""

from kferry.users.dex import DEFAULT_NAMESPACE, HASH, HASH_FROM_ENV, DexInstall
from kferry.users.names import check_email, profile_name_for, user_id_for
from kferry.users.passwords import BCRYPT_COST, check_password, hash_password, read_password
from kferry.users.profiles import Profiles
from kferry.users.service import (
    AddResult,
    Listing,
    RemoveResult,
    UserRow,
    add_user,
    list_users,
    remove_user,
    rollout_done,
    wait_rollout,
)

__all__ = [
    "BCRYPT_COST",
    "DEFAULT_NAMESPACE",
    "HASH",
    "HASH_FROM_ENV",
    "AddResult",
    "DexInstall",
    "Listing",
    "Profiles",
    "RemoveResult",
    "UserRow",
    "add_user",
    "check_email",
    "check_password",
    "hash_password",
    "list_users",
    "profile_name_for",
    "read_password",
    "remove_user",
    "rollout_done",
    "user_id_for",
    "wait_rollout",
]
