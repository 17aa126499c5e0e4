"""Static catalogue: locations, data centers, server types (with per-location prices and
availability) and system images.

Numbers are plausible, not Hetzner's: product code must read prices and availability from
``GET /server_types`` at run time, and tests can edit ``state.server_types`` freely.

Availability per location is one of:

* ``available``   - orderable, listed in the data center's ``server_types.available``;
* ``deprecated``  - deprecation announced, still orderable until ``unavailable_after``
                    (in the future);
* ``unavailable`` - deprecated and past ``unavailable_after``: supported but not orderable
                    (creating a server answers ``resource_unavailable``).

Notable entries: ``cx53`` is unavailable in ``hel1``; ``cpx62`` is deprecated (still
orderable) in ``sin``; ``cx22`` is the legacy type, deprecated everywhere; Arm (``cax``)
and ``cx`` types exist only in the EU locations.
"""

from __future__ import annotations

import copy
from typing import Any

DEPRECATION_PAST = {"announced": "2025-10-16T06:00:00+00:00",
                    "unavailable_after": "2026-01-01T00:00:00+00:00"}
DEPRECATION_FUTURE = {"announced": "2026-01-15T06:00:00+00:00",
                      "unavailable_after": "2099-12-31T23:59:59+00:00"}

LOCATIONS: list[dict[str, Any]] = [
    {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE",
     "city": "Falkenstein", "latitude": 50.47612, "longitude": 12.370071, "network_zone": "eu-central"},
    {"id": 2, "name": "nbg1", "description": "Nuremberg DC Park 1", "country": "DE",
     "city": "Nuremberg", "latitude": 49.452102, "longitude": 11.076665, "network_zone": "eu-central"},
    {"id": 3, "name": "hel1", "description": "Helsinki DC Park 1", "country": "FI",
     "city": "Helsinki", "latitude": 60.169855, "longitude": 24.938379, "network_zone": "eu-central"},
    {"id": 4, "name": "ash", "description": "Ashburn, VA", "country": "US",
     "city": "Ashburn, VA", "latitude": 39.045821, "longitude": -77.487073, "network_zone": "us-east"},
    {"id": 5, "name": "hil", "description": "Hillsboro, OR", "country": "US",
     "city": "Hillsboro, OR", "latitude": 45.54222, "longitude": -122.95194, "network_zone": "us-west"},
    {"id": 6, "name": "sin", "description": "Singapore", "country": "SG",
     "city": "Singapore", "latitude": 1.283333, "longitude": 103.833333, "network_zone": "ap-southeast"},
]

# data center id -> (name, location id)
DATACENTERS = [(4, "fsn1-dc14", 1), (2, "nbg1-dc3", 2), (3, "hel1-dc2", 3),
               (5, "ash-dc1", 4), (6, "hil-dc1", 5), (7, "sin-dc1", 6)]

EU = ("fsn1", "nbg1", "hel1")
ALL = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")

# name, id, cores, memory GB, disk GB, cpu_type, architecture, category, EUR net/month (EU),
# {location: availability}
_T = tuple[str, int, int, float, int, str, str, str, float, dict[str, str]]


def _avail(locs, **overrides) -> dict[str, str]:
    out = {loc: "available" for loc in locs}
    out.update(overrides)
    return out


SERVER_TYPES: list[_T] = [
    ("cx22", 104, 2, 4.0, 40, "shared", "x86", "Cost-Optimized", 3.79,
     {loc: "unavailable" for loc in EU}),
    ("cx23", 114, 2, 4.0, 40, "shared", "x86", "Cost-Optimized", 3.49, _avail(EU)),
    ("cx33", 115, 4, 8.0, 80, "shared", "x86", "Cost-Optimized", 5.49, _avail(EU)),
    ("cx43", 116, 8, 16.0, 160, "shared", "x86", "Cost-Optimized", 9.49, _avail(EU)),
    ("cx53", 117, 16, 32.0, 320, "shared", "x86", "Cost-Optimized", 17.49,
     _avail(EU, hel1="unavailable")),
    ("cpx12", 120, 1, 2.0, 40, "shared", "x86", "Regular Purpose", 4.99, _avail(ALL)),
    ("cpx22", 121, 2, 4.0, 80, "shared", "x86", "Regular Purpose", 7.99, _avail(ALL)),
    ("cpx32", 122, 4, 8.0, 160, "shared", "x86", "Regular Purpose", 13.99, _avail(ALL)),
    ("cpx42", 123, 8, 16.0, 320, "shared", "x86", "Regular Purpose", 25.49, _avail(ALL)),
    ("cpx52", 124, 12, 24.0, 480, "shared", "x86", "Regular Purpose", 36.49, _avail(ALL)),
    ("cpx62", 125, 16, 32.0, 640, "shared", "x86", "Regular Purpose", 49.99,
     _avail(ALL, sin="deprecated")),
    ("cax11", 45, 2, 4.0, 40, "shared", "arm", "Cost-Optimized", 4.49, _avail(EU)),
    ("cax21", 93, 4, 8.0, 80, "shared", "arm", "Cost-Optimized", 7.99, _avail(EU)),
    ("cax31", 94, 8, 16.0, 160, "shared", "arm", "Cost-Optimized", 15.99, _avail(EU)),
    ("cax41", 95, 16, 32.0, 320, "shared", "arm", "Cost-Optimized", 30.49, _avail(EU)),
    ("ccx13", 96, 2, 8.0, 80, "dedicated", "x86", "General Purpose", 15.99, _avail(ALL)),
    ("ccx23", 97, 4, 16.0, 160, "dedicated", "x86", "General Purpose", 31.49, _avail(ALL)),
]

IMAGES: list[dict[str, Any]] = [
    # id, name, description, os_flavor, os_version, architecture, deprecated
    {"id": 114690387, "name": "debian-12", "description": "Debian 12", "os_flavor": "debian",
     "os_version": "12", "architecture": "x86", "deprecated": None},
    {"id": 114690389, "name": "debian-12", "description": "Debian 12", "os_flavor": "debian",
     "os_version": "12", "architecture": "arm", "deprecated": None},
    {"id": 161547269, "name": "ubuntu-24.04", "description": "Ubuntu 24.04", "os_flavor": "ubuntu",
     "os_version": "24.04", "architecture": "x86", "deprecated": None},
    {"id": 161547270, "name": "ubuntu-24.04", "description": "Ubuntu 24.04", "os_flavor": "ubuntu",
     "os_version": "24.04", "architecture": "arm", "deprecated": None},
    {"id": 67794396, "name": "debian-11", "description": "Debian 11", "os_flavor": "debian",
     "os_version": "11", "architecture": "x86", "deprecated": "2025-08-15T00:00:00+00:00"},
]

_LOCATION_PRICE_FACTOR = {"fsn1": 1.0, "nbg1": 1.0, "hel1": 1.0, "ash": 1.2, "hil": 1.2, "sin": 1.4}
_INCLUDED_TRAFFIC = {"fsn1": 20, "nbg1": 20, "hel1": 20, "ash": 1, "hil": 1, "sin": 0.5}  # TB
_TRAFFIC_PRICE = {"fsn1": 1.0, "nbg1": 1.0, "hel1": 1.0, "ash": 1.0, "hil": 1.0, "sin": 7.4}
VAT = 0.19
TB = 1024 ** 4


def price(net: float) -> dict[str, str]:
    """Price object as the API writes it: net with 10, gross with 16 decimals (strings)."""
    return {"net": f"{net:.10f}", "gross": f"{net * (1 + VAT):.16f}"}


def build_locations() -> dict[int, dict[str, Any]]:
    return {loc["id"]: copy.deepcopy(loc) for loc in LOCATIONS}


def build_server_types(locations: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    by_name = {loc["name"]: loc for loc in locations.values()}
    out = {}
    for (name, tid, cores, mem, disk, cpu, arch, category, monthly, avail) in SERVER_TYPES:
        locs, prices = [], []
        for loc_name, state in avail.items():
            loc = by_name[loc_name]
            dep = {"unavailable": DEPRECATION_PAST, "deprecated": DEPRECATION_FUTURE}.get(state)
            # ``available``/``recommended`` are not in the Feb 2026 OpenAPI file, but
            # hcloud-python >= 2.2x requires them (ServerTypeLocation) - the live API has them.
            locs.append({"id": loc["id"], "name": loc_name,
                         "deprecation": copy.deepcopy(dep) if dep else None,
                         "available": state != "unavailable",
                         "recommended": state == "available",
                         "_availability": state})
            m = round(monthly * _LOCATION_PRICE_FACTOR[loc_name], 4)
            prices.append({
                "location": loc_name,
                "price_hourly": price(round(m / 730, 4)),
                "price_monthly": price(m),
                "included_traffic": int(_INCLUDED_TRAFFIC[loc_name] * TB),
                "price_per_tb_traffic": price(_TRAFFIC_PRICE[loc_name]),
            })
        everywhere_gone = all(s == "unavailable" for s in avail.values())
        out[tid] = {
            "id": tid, "name": name,
            "description": name.upper(),
            "category": category,
            "cores": cores, "memory": mem, "disk": disk,
            "cpu_type": cpu, "architecture": arch, "storage_type": "local",
            "deprecated": everywhere_gone,
            "deprecation": copy.deepcopy(DEPRECATION_PAST) if everywhere_gone else None,
            "prices": prices,
            "locations": locs,
        }
    return out


def build_datacenters(locations: dict[int, dict[str, Any]],
                      server_types: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out = {}
    for dcid, name, loc_id in DATACENTERS:
        loc = locations[loc_id]
        supported, available = [], []
        for st in server_types.values():
            for sl in st["locations"]:
                if sl["id"] == loc_id:
                    supported.append(st["id"])
                    if sl["_availability"] != "unavailable":
                        available.append(st["id"])
        out[dcid] = {
            "id": dcid, "name": name,
            "description": f"{loc['city'].split(',')[0]} {name.split('-')[1].upper()}",
            "location": loc,  # shared reference: edits to a location show everywhere
            "server_types": {"supported": supported, "available": available,
                             "available_for_migration": list(available)},
        }
    return out


def build_images() -> dict[int, dict[str, Any]]:
    out = {}
    for img in IMAGES:
        # ``deprecated`` (timestamp) is what the Feb 2026 OpenAPI file requires; newer API
        # versions add ``deprecation`` {announced, unavailable_after}, which hcloud-python
        # >= 2.24 reads (the changelog of 2026-09-08 removes ``deprecated``). Both are sent.
        deprecation = None
        if img["deprecated"]:
            deprecation = {"announced": img["deprecated"], "unavailable_after": "2025-11-15T00:00:00+00:00"}
        out[img["id"]] = {
            **copy.deepcopy(img),
            "deprecation": deprecation,
            "type": "system", "status": "available",
            "image_size": None, "disk_size": 5.0,
            "created": "2024-01-01T00:00:00+00:00",
            "created_from": None, "bound_to": None, "deleted": None,
            "rapid_deploy": True,
            "protection": {"delete": False},
            "labels": {},
        }
    return out
