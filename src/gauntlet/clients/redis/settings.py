"""Role settings as the Redis checks see them: the inventory's value, else the role default; passwords from
the inventory or the secret the role generated."""

from __future__ import annotations

from typing import Any

from gauntlet.cluster import Cluster
from gauntlet.errors import InventoryError


def setting(cluster: Cluster, name: str, group: str) -> Any:
    """A role setting as the hosts of ``group`` see it: the inventory's value, else the role default."""
    return cluster.setting(name, group)


def secret(cluster: Cluster, name: str, group: str) -> str:
    """A password as the roles see it (:meth:`Cluster.secret`)."""
    return cluster.secret(name, group)


def user_password(cluster: Cluster, user: str, group: str = "redis") -> str:
    """The password of a Redis ACL user: the admin (``redis_admin_password``) or one of ``redis_users``."""
    if user == setting(cluster, "redis_admin_user", group):
        return secret(cluster, "redis_admin_password", group)
    for u in cluster.var("redis_users", [], group=group) or []:
        if u.get("name") == user:
            return str(u["password"])
    raise InventoryError(
        f"Redis user {user!r} is neither redis_admin_user nor in redis_users of group {group}"
    )
