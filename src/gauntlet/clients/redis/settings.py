"""Role settings as the Redis checks see them: the inventory's value, else the role default; passwords from
the inventory or the secret the role generated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gauntlet.cluster import Cluster
from gauntlet.errors import InventoryError


def setting(cluster: Cluster, name: str, group: str) -> Any:
    """A role setting as the hosts of ``group`` see it: the inventory's value, else the role default."""
    return cluster.setting(name, group)


def secret(cluster: Cluster, name: str, group: str) -> str:
    """A password as the roles see it: the inventory's value if it sets one, else the secret the role default
    generated (``<gauntlet_secrets_dir>/<name without _password>``, ansible's password lookup)."""
    value = cluster.var(name, None, group=group)
    if value:
        return str(value)
    secrets_dir = cluster.var("gauntlet_secrets_dir", None, group=group)
    path = Path(str(secrets_dir)) / name.removesuffix("_password") if secrets_dir else None
    if not path or not path.exists():
        raise InventoryError(f"{name} is not set in the inventory and no generated secret exists at {path}")
    return path.read_text().split()[0]


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
