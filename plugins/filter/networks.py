"""Filters for the networks a server lets in (pg_hba), computed on the controller with the standard library.

``gauntlet.cluster.invalid_networks``
    the entries of a list that are not ``address/prefix`` networks (what pg_hba's address column needs).
``gauntlet.cluster.host_networks``
    addresses as one-host networks (``/32``, ``/128``); empty (or null) entries are dropped.
``gauntlet.cluster.uncovered_addresses``
    the addresses of a list that no network of another list contains.
``gauntlet.cluster.host_addresses``
    ``{host: address}`` of inventory hosts: a variable the inventory sets (e.g. ``patroni_address``), else
    the host's default IPv4 from its gathered facts, else ``""``.
``gauntlet.cluster.controller_source_address``
    the address the controller's own routing would send from to reach a host: what that host sees as the
    controller's address when nothing translates it (no NAT, no jump host).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import Any


def _network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``value`` as a network when it is written ``address/prefix`` (host bits allowed, as pg_hba allows)."""
    text = str(value).strip()
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def invalid_networks(networks: Iterable[object]) -> list[str]:
    """The entries of ``networks`` that are not ``address/prefix`` networks, as written."""
    return [str(n) for n in networks if _network(n) is None]


def host_networks(addresses: Iterable[object]) -> list[str]:
    """Each address as the network of that one host (``10.0.0.5/32``, ``fd00::5/128``), in order, once each.

    Empty (or null) entries are dropped; an entry that is not an address raises ``ValueError`` naming it."""
    out: list[str] = []
    for a in addresses:
        text = "" if a is None else str(a).strip()
        if not text:
            continue
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(
                f"'{text}' is not an IP address (a one-host network is written with the host's address, not a name)"
            ) from None
        net = f"{ip}/{ip.max_prefixlen}"
        if net not in out:
            out.append(net)
    return out


def uncovered_addresses(addresses: Iterable[object], networks: Iterable[object]) -> list[str]:
    """The addresses no network of ``networks`` contains (invalid networks contain nothing)."""
    nets = [n for n in (_network(x) for x in networks) if n is not None]
    out = []
    for a in addresses:
        text = str(a).strip()
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            out.append(text)
            continue
        if not any(ip.version == n.version and ip in n for n in nets):
            out.append(text)
    return out


def host_addresses(hosts: Iterable[str], hostvars: Mapping[str, Any], variable: str = "") -> dict[str, str]:
    """``{host: address}``: ``hostvars[host][variable]`` when the inventory sets it, else the host's default
    IPv4 address from its facts, else ``""`` (facts not gathered)."""
    out: dict[str, str] = {}
    for h in hosts:
        hv = hostvars[h]
        explicit = hv.get(variable) if variable else None
        if explicit:
            out[h] = str(explicit)
            continue
        facts = hv.get("ansible_facts") or {}
        out[h] = str((facts.get("default_ipv4") or {}).get("address") or "")
    return out


def controller_source_address(destinations: Iterable[object]) -> str:
    """The controller's source address towards the first entry of ``destinations`` that is an IP address
    (entries that are names, e.g. a container's, are passed over); ``""`` when none is, or no route leads
    there. A UDP socket is connected to learn the route: no packet is sent."""
    for d in destinations:
        try:
            ip = ipaddress.ip_address(str(d).strip())
        except ValueError:
            continue
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((str(ip), 9))
                return str(s.getsockname()[0])
        except OSError:
            return ""
    return ""


class FilterModule:
    """The filters of this file, under gauntlet.cluster."""

    def filters(self) -> dict[str, Any]:
        return {
            "invalid_networks": invalid_networks,
            "host_networks": host_networks,
            "uncovered_addresses": uncovered_addresses,
            "host_addresses": host_addresses,
            "controller_source_address": controller_source_address,
        }
