"""The PostgreSQL the cache fronts, found from the inventory, with the table of versioned rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from gauntlet.clients.cache.values import TABLE, payload
from gauntlet.cluster import Cluster
from gauntlet.errors import InventoryError


@dataclass(frozen=True)
class Database:
    """The PostgreSQL the cache fronts: a standalone server (group ``postgresql_standalone``) or HAProxy's
    read-write port in front of Patroni (group ``haproxy``), as the application user, with ``verify-full``
    TLS."""

    host: str
    address: str
    port: int
    user: str
    password: str
    dbname: str
    sslrootcert: Path

    @classmethod
    def for_cluster(cls, cluster: Cluster) -> Database:
        """The database endpoint of the topology, from the inventory (and the role defaults) alone.

        Group ``haproxy`` present (the ``default`` topology: Patroni behind HAProxy) → HAProxy's read-write
        port (``haproxy_primary_port``) on the first ``haproxy`` host, as the Patroni application user
        (``patroni_app_*`` of group ``postgres``); else the first host of group ``postgresql_standalone`` (standalone
        PostgreSQL, ``postgresql_port`` and ``postgresql_app_*``). ``verify-full`` either way: HAProxy passes
        TLS through, and the pki role puts the load balancer's name in the members' certificates.
        """
        from gauntlet.clients.redis import secret

        if cluster.has_group("haproxy"):
            lb = cluster.group("haproxy")[0]

            def v(name: str) -> Any:
                return cluster.setting(name, "postgres")

            return cls(
                host=lb.name,
                address=lb.address,
                port=int(cluster.setting("haproxy_primary_port", "haproxy")),
                user=str(v("patroni_app_user")),
                password=secret(cluster, "patroni_app_password", "postgres"),
                dbname=str(v("patroni_app_database")),
                sslrootcert=cluster.ca_cert,
            )
        if cluster.has_group("postgresql_standalone"):  # role postgresql, mode standalone
            h = cluster.group("postgresql_standalone")[0]

            def v(name: str) -> Any:
                return cluster.setting(name, "postgresql_standalone")

            return cls(
                host=h.name,
                address=h.address,
                port=int(v("postgresql_port")),
                user=str(v("postgresql_app_user")),
                password=secret(cluster, "postgresql_app_password", "postgresql_standalone"),
                dbname=str(v("postgresql_app_database")),
                sslrootcert=cluster.ca_cert,
            )
        raise InventoryError(
            f"inventory {cluster.source} has no database for the cache: group haproxy (in front of "
            "Patroni, group postgres) or group postgresql_standalone (a standalone PostgreSQL)"
        )

    def connect(self, timeout: int = 3) -> psycopg.Connection:
        """An autocommit connection (each statement its own transaction)."""
        return psycopg.connect(
            host=self.host,
            hostaddr=self.address,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.dbname,
            sslmode="verify-full",
            sslrootcert=str(self.sslrootcert),
            connect_timeout=timeout,
            autocommit=True,
            application_name="gauntlet-cache",
        )

    def setup(self, keys: Iterable[str]) -> None:
        """Create the table if needed and (re)set every key to version 1."""
        with self.connect() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (key text PRIMARY KEY, version bigint NOT NULL, payload text)"
            )
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {TABLE} (key, version, payload) VALUES (%s, 1, %s) "
                    "ON CONFLICT (key) DO UPDATE SET version = 1, payload = EXCLUDED.payload",
                    [(k, payload(k, 1)) for k in keys],
                )

    def versions(self, keys: Iterable[str]) -> dict[str, int]:
        """The current version of each key."""
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT key, version FROM {TABLE} WHERE key = ANY(%s)", (list(keys),)
            ).fetchall()
        return {k: int(v) for k, v in rows}
