"""Hetzner Cloud: what AINI owns there, what it would change, and what it costs.

Decisions are pure functions over plain records (`Offer`, `Owned`); the edge that talks
to the API (`connect`, `read_offers`, `read_owned`, `destroy`) is thin and uses the real
hcloud-python client. Everything AINI creates carries the label `aini/project=<project>`
and is found again by it, never by guessing. Prices are read from the API, never stored.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import __version__, catalog
from ..catalog.model import subdomain_of
from ..errors import AiniError, InputError

if TYPE_CHECKING:
    from hcloud import Client

    from ..config import AiniConfig, HetznerTarget

LABEL = "aini/project"
TOKEN_ENV = "HCLOUD_TOKEN"
ENDPOINT_ENV = "HCLOUD_ENDPOINT"  # the same variable hcloud tools and the Ansible collection read
KINDS = ("server", "firewall", "ssh_key", "volume", "primary_ip")


def labels(config: AiniConfig) -> dict[str, str]:
    return {LABEL: config.project}


def selector(config: AiniConfig) -> str:
    return f"{LABEL}={config.project}"


@dataclass(frozen=True)
class Offer:
    """A server type as the API describes it, reduced to what AINI decides on."""

    name: str
    cores: int
    memory_gb: float
    architecture: str
    monthly_gross: dict[str, str]  # location -> price per month incl. VAT, as the API writes it
    currency: str
    available_in: frozenset[str]


@dataclass(frozen=True)
class Owned:
    kind: str
    name: str
    id: int


@dataclass(frozen=True)
class Change:
    action: str  # create | keep
    kind: str
    name: str
    detail: str = ""


@dataclass(frozen=True)
class CloudPlan:
    changes: list[Change]
    server_type: str
    location: str
    monthly_gross: str
    currency: str
    dns_records: list[str] = field(default_factory=list)


def names(config: AiniConfig) -> dict[str, str]:
    """The name of each resource AINI creates for a project."""
    p = config.project
    return {"server": p, "firewall": f"{p}-firewall", "ssh_key": f"{p}-admin", "volume": f"{p}-data", "primary_ip": f"{p}-ipv4"}


def wanted(config: AiniConfig) -> list[tuple[str, str]]:
    target: HetznerTarget = config.target  # type: ignore[assignment]
    n = names(config)
    kinds = ["ssh_key", "firewall"]
    if target.primary_ip:
        kinds.append("primary_ip")
    kinds.append("server")
    if target.volume_gb:
        kinds.append("volume")
    return [(kind, n[kind]) for kind in kinds]


def choose_offer(offers: list[Offer], server_type: str, location: str) -> Offer:
    """The offer for `server_type` in `location`, or an InputError naming alternatives."""
    by_name = {o.name: o for o in offers}
    offer = by_name.get(server_type)
    if offer is None:
        raise InputError(f"target.server_type: Hetzner has no server type '{server_type}'; see `aini plan` for the list")
    if location not in offer.available_in:
        similar = sorted(
            (o for o in offers if location in o.available_in and o.memory_gb >= offer.memory_gb),
            key=lambda o: (o.architecture != offer.architecture, o.memory_gb, o.cores, o.name),
        )[:3]
        elsewhere = sorted(offer.available_in)
        hint = f" Similar types there: {', '.join(o.name for o in similar)}." if similar else ""
        where = f" {server_type} is available in {', '.join(elsewhere)}." if elsewhere else ""
        raise InputError(f"target.server_type: {server_type} cannot be ordered in {location}.{hint}{where}")
    return offer


def plan(config: AiniConfig, offers: list[Offer], owned: list[Owned]) -> CloudPlan:
    target: HetznerTarget = config.target  # type: ignore[assignment]
    offer = choose_offer(offers, target.server_type, target.location)
    have = {(o.kind, o.name) for o in owned}
    changes = [
        Change("keep" if (kind, name) in have else "create", kind, name, _detail(kind, target))
        for kind, name in wanted(config)
    ]
    records = []
    if target.dns_zone:
        relative = config.domain.removesuffix(target.dns_zone).rstrip(".")
        for spec in catalog.enabled(config):
            if catalog.routed(spec, config):
                sub = subdomain_of(spec, config)
                records.append(f"{sub}.{relative}" if relative else sub)
    return CloudPlan(changes, offer.name, target.location, offer.monthly_gross[target.location], offer.currency, records)


def _detail(kind: str, target: HetznerTarget) -> str:
    if kind == "server":
        return f"{target.server_type} in {target.location}, {target.image}"
    if kind == "firewall":
        ssh = ", ".join(target.ssh_from) or "anywhere"
        return f"in: {target.ssh_port}/tcp from {ssh}; 80, 443/tcp from anywhere"
    if kind == "volume":
        return f"{target.volume_gb} GB"
    return ""


# --- the edge: hcloud-python -------------------------------------------------------


def token(prompt: Callable[[str], str] | None = None) -> str:
    """The API token from HCLOUD_TOKEN or a hidden prompt; never from argv or aini.yml. A
    prompted token is put into this process's environment, where the Ansible modules read it."""
    value = os.environ.get(TOKEN_ENV)
    if not value and prompt is None and sys.stdin.isatty():
        prompt = getpass.getpass
    if not value and prompt is not None:
        value = prompt("Hetzner Cloud API token (read & write): ").strip()
        if value:
            os.environ[TOKEN_ENV] = value
    if not value:
        raise InputError(f"no Hetzner Cloud token: export {TOKEN_ENV} (a read & write API token of your project)")
    return value


def connect(prompt: Callable[[str], str] | None = None) -> Client:
    from hcloud import Client

    endpoint = os.environ.get(ENDPOINT_ENV, "https://api.hetzner.cloud/v1")
    return Client(token=token(prompt), api_endpoint=endpoint, application_name="aini", application_version=__version__)


def api_error(exc: Exception) -> AiniError:
    """One sentence per API failure a user can act on."""
    code = getattr(exc, "code", None)
    messages = {
        "unauthorized": f"the Hetzner Cloud API refused the token in {TOKEN_ENV}; create a read & write token in the Cloud Console",
        "forbidden": f"the token in {TOKEN_ENV} is read-only; AINI needs a read & write token",
        "resource_limit_exceeded": "your Hetzner project's quota is exhausted; delete unused resources or ask Hetzner to raise the limit",
        "rate_limit_exceeded": "the Hetzner Cloud API rate limit is exhausted (3600 requests per hour); wait a few minutes and run again",
        "resource_unavailable": "Hetzner cannot provide this server type in this location right now; choose another type or location",
    }
    if code in messages:
        return AiniError(messages[code])
    if code is None and not hasattr(exc, "message"):  # no API answer at all: connection dropped, timeout, DNS
        return AiniError(f"the Hetzner Cloud API did not answer ({type(exc).__name__}); check the network and run the same command again")
    message = getattr(exc, "message", None) or type(exc).__name__
    return AiniError(f"the Hetzner Cloud API failed ({code or 'no answer'}): {message}; run the same command again to resume")


def read_offers(client: Client) -> list[Offer]:
    offers = []
    for st in client.server_types.get_all():
        prices = {p["location"]: p["price_monthly"]["gross"] for p in st.prices}
        # `available` is the API's own word; an API without per-location data sells where it prices.
        available = {loc.location.name for loc in st.locations if loc.available is not False} if st.locations else set(prices)
        offers.append(
            Offer(st.name, st.cores, float(st.memory), st.architecture, prices, "EUR", frozenset(available & set(prices)))
        )
    return offers


def server_ipv4(client: Client, config: AiniConfig) -> str:
    """The project's server's public IPv4, found by its label (never by name alone)."""
    try:
        servers = client.servers.get_all(label_selector=selector(config))
    except Exception as exc:  # noqa: BLE001 - hcloud's errors become one sentence
        raise api_error(exc) from None
    if len(servers) != 1 or not servers[0].public_net.ipv4:
        raise AiniError(f"no server of project '{config.project}' in Hetzner Cloud (found {len(servers)}); "
                        "run aini up first")
    return servers[0].public_net.ipv4.ip


def read_owned(client: Client, config: AiniConfig) -> list[Owned]:
    sel = selector(config)
    found: list[Owned] = []
    for kind, api in (
        ("server", client.servers),
        ("firewall", client.firewalls),
        ("ssh_key", client.ssh_keys),
        ("volume", client.volumes),
        ("primary_ip", client.primary_ips),
    ):
        found.extend(Owned(kind, item.name, item.id) for item in api.get_all(label_selector=sel))
    return found


def destroy(client: Client, config: AiniConfig, keep: set[str], say: Callable[[str], None]) -> list[Owned]:
    """Delete every labelled resource except the kinds in `keep`; the server first (it holds
    the others), then what was attached to it. Returns what was removed."""
    removed = []
    owned = read_owned(client, config)
    order = {kind: i for i, kind in enumerate(KINDS)}
    for item in sorted(owned, key=lambda o: order[o.kind]):
        if item.kind in keep:
            say(f"kept {item.kind} {item.name}")
            continue
        api = {"server": client.servers, "firewall": client.firewalls, "ssh_key": client.ssh_keys,
               "volume": client.volumes, "primary_ip": client.primary_ips}[item.kind]  # fmt: skip
        bound = api.get_by_id(item.id)
        if item.kind == "server":
            bound.delete().wait_until_finished()
        elif item.kind == "volume" and bound.server:
            bound.detach().wait_until_finished()
            bound.delete()
        elif item.kind == "firewall":
            _free_firewall(bound)
            bound.delete()
        else:
            bound.delete()
        removed.append(item)
        say(f"removed {item.kind} {item.name}")
    return removed


def _free_firewall(firewall) -> None:
    """A firewall still applied to something cannot be deleted."""
    if firewall.applied_to:
        for action in firewall.remove_from_resources(firewall.applied_to):
            action.wait_until_finished()
