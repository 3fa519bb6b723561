"""The declarations the scenarios ship (molecule/<topology>/hosts.yml), for unit tests of the declared API."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def declaration(topology: str, group: str) -> dict[str, Any]:
    """A fresh copy of ``custom_server_api`` as ``molecule/<topology>/hosts.yml`` declares it for ``group``."""
    hosts = yaml.safe_load((ROOT / "molecule" / topology / "hosts.yml").read_text())
    return copy.deepcopy(hosts[group]["vars"]["custom_server_api"])


def raftkv_api() -> dict[str, Any]:
    """The reference Raft KV server's declaration (the custom scenario)."""
    return declaration("custom", "custom_server")


def etcd_api() -> dict[str, Any]:
    """etcd's JSON gateway's declaration (the etcd scenario)."""
    return declaration("etcd", "etcd")


def runner_api() -> dict[str, Any]:
    """The reference entity-runtime server's declaration (the runners scenario)."""
    return declaration("runners", "custom_server")
