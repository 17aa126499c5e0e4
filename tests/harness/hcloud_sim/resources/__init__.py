"""One module per API resource; each exposes ``route`` (a :class:`Registry`)."""

from __future__ import annotations

from . import actions, catalog_api, firewalls, networks, primary_ips, servers, ssh_keys, volumes, zones
from .common import Route

MODULES = (actions, catalog_api, ssh_keys, servers, firewalls, volumes, primary_ips, networks, zones)


def all_routes() -> list[Route]:
    routes = [r for m in MODULES for r in m.route.routes]
    # literal segments before parameters, so /zones/actions wins over /zones/{id_or_name}
    return sorted(routes, key=lambda r: r.specificity)
