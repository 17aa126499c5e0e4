"""Networks with subnets and routes; servers attach via server actions (see servers.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..errors import ApiError, invalid_input, uniqueness
from ..request import Body, Request, list_response
from ..state import State, public
from .common import Registry, action_body, register_action_routes

route = Registry()

NETWORK_ZONES = ("eu-central", "us-east", "us-west", "ap-southeast")


def _private_net(value: Any, field: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except (ValueError, TypeError):
        raise invalid_input({field: f"{value!r} is not a valid network in CIDR notation"}) from None
    if net.version != 4 or not net.is_private:
        raise invalid_input({field: "must be a private IPv4 network (RFC 1918)"})
    return net


def _gateway(network: dict) -> str:
    return str(next(ipaddress.ip_network(network["ip_range"]).hosts()))


def _make_subnet(state: State, network: dict, raw: dict, field: str) -> dict:
    if not isinstance(raw, dict):
        raise invalid_input({field: "Not a valid object."})
    stype = raw.get("type")
    zone = raw.get("network_zone")
    if stype not in ("cloud", "server", "vswitch"):
        raise invalid_input({f"{field}.type": "Must be one of: cloud, server, vswitch."})
    if zone not in NETWORK_ZONES:
        raise invalid_input({f"{field}.network_zone": "unknown network zone"})
    if stype == "vswitch" and not isinstance(raw.get("vswitch_id"), int):
        raise invalid_input({f"{field}.vswitch_id": "vswitch_id is required for vswitch subnets"})
    parent = ipaddress.ip_network(network["ip_range"])
    taken = [ipaddress.ip_network(s["ip_range"]) for s in network["subnets"]]
    if raw.get("ip_range") is not None:
        net = _private_net(raw["ip_range"], f"{field}.ip_range")
        if not net.subnet_of(parent):
            raise invalid_input({f"{field}.ip_range": "subnet must be inside the network ip_range"})
        if any(net.overlaps(t) for t in taken):
            raise invalid_input({f"{field}.ip_range": "subnet overlaps with an existing subnet"})
    else:
        prefix = max(parent.prefixlen, 24)
        net = next((c for c in parent.subnets(new_prefix=prefix) if not any(c.overlaps(t) for t in taken)), None)
        if net is None:
            raise ApiError("resource_unavailable", "no free subnet left in network")
    sub = {"type": stype, "ip_range": str(net), "network_zone": zone, "gateway": _gateway(network)}
    if stype == "vswitch":
        sub["vswitch_id"] = raw["vswitch_id"]
    return sub


def _route(raw: Any, field: str) -> dict:
    if not isinstance(raw, dict):
        raise invalid_input({field: "Not a valid object."})
    try:
        dest = ipaddress.ip_network(raw.get("destination"), strict=True)
        gw = ipaddress.ip_address(raw.get("gateway"))
    except (ValueError, TypeError):
        raise invalid_input({field: "destination must be a CIDR network and gateway an IP address"}) from None
    return {"destination": str(dest), "gateway": str(gw)}


def attached_servers(state: State, network_id: int) -> list[int]:
    return sorted(sid for sid, s in state.servers.items()
                  if any(p["network"] == network_id for p in s["private_net"]))


def allocate_ip(state: State, network: dict, zone: str, wanted: str | None = None,
                ip_range: str | None = None) -> str:
    """Pick (or check) a private IP for a server in a subnet of ``zone``."""
    used = {p["ip"] for s in state.servers.values() for p in s["private_net"] if p["network"] == network["id"]}
    used |= {a for s in state.servers.values() for p in s["private_net"] if p["network"] == network["id"]
             for a in p.get("alias_ips", [])}
    subnets = [s for s in network["subnets"] if s["network_zone"] == zone and s["type"] in ("cloud", "server")]
    if ip_range:
        subnets = [s for s in subnets if ipaddress.ip_network(s["ip_range"]).subnet_of(ipaddress.ip_network(ip_range))
                   or s["ip_range"] == ip_range]
    if not subnets:
        raise ApiError("no_subnet_available", f"network {network['id']} has no subnet in network zone {zone}")
    if wanted is not None:
        try:
            addr = ipaddress.ip_address(wanted)
        except ValueError:
            raise invalid_input({"ip": "not a valid IP address"}) from None
        if not any(addr in ipaddress.ip_network(s["ip_range"]) for s in subnets):
            raise invalid_input({"ip": "IP is not inside a subnet of the network"})
        if wanted in used or wanted == network["subnets"][0]["gateway"]:
            raise ApiError("ip_not_available", f"IP {wanted} is already in use")
        return wanted
    for sub in subnets:
        hosts = ipaddress.ip_network(sub["ip_range"]).hosts()
        for addr in hosts:
            ip = str(addr)
            if ip != sub["gateway"] and ip not in used and int(addr) & 0xFF > 1:
                return ip
    raise ApiError("no_subnet_available", "no free IP left in network")


def render(state: State, network: dict) -> dict:
    out = public(network)
    out["servers"] = attached_servers(state, network["id"])
    return out


def _get(state: State, ident) -> dict:
    return state.get(state.networks, ident, "network")


@route("GET", "/networks")
def list_networks(state: State, req: Request):
    return 200, list_response(req, "networks", state.networks.values(), lambda n: render(state, n))


@route("POST", "/networks")
def create_network(state: State, req: Request):
    b = Body(req.body)
    name = b.str("name", required=True)
    ip_range = b.str("ip_range", required=True)
    labels = b.labels()
    subnets = b.list("subnets")
    routes = b.list("routes")
    expose = b.bool("expose_routes_to_vswitch", default=False)
    b.done()
    net = _private_net(ip_range, "ip_range")
    if not 8 <= net.prefixlen <= 24:
        raise invalid_input({"ip_range": "network size must be between /8 and /24"})
    if state.name_taken(state.networks, name):
        raise uniqueness("name")
    network = {"id": state.next_id(), "name": name, "ip_range": str(net), "subnets": [], "routes": [],
               "servers": [], "load_balancers": [], "labels": labels or {},
               "protection": {"delete": False}, "created": state.now_iso(),
               "expose_routes_to_vswitch": expose}
    for i, raw in enumerate(subnets or []):
        network["subnets"].append(_make_subnet(state, network, raw, f"subnets[{i}]"))
    network["routes"] = [_route(r, f"routes[{i}]") for i, r in enumerate(routes or [])]
    state.networks[network["id"]] = network
    return 201, {"network": render(state, network)}


@route("GET", "/networks/{id:int}")
def get_network(state: State, req: Request, id: int):
    return 200, {"network": render(state, _get(state, id))}


@route("PUT", "/networks/{id:int}")
def update_network(state: State, req: Request, id: int):
    network = _get(state, id)
    b = Body(req.body)
    name = b.str("name")
    labels = b.labels()
    expose = b.bool("expose_routes_to_vswitch")
    b.done()
    if name is not None:
        if state.name_taken(state.networks, name, exclude=id):
            raise uniqueness("name")
        network["name"] = name
    if labels is not None:
        network["labels"] = labels
    if expose is not None:
        network["expose_routes_to_vswitch"] = expose
    return 200, {"network": render(state, network)}


@route("DELETE", "/networks/{id:int}")
def delete_network(state: State, req: Request, id: int):
    network = _get(state, id)
    if network["protection"]["delete"]:
        raise ApiError("protected", "network is delete protected")
    state.check_unlocked("network", id)
    for sid in attached_servers(state, id):  # "Attached resources will be detached automatically."
        server = state.servers[sid]
        server["private_net"] = [p for p in server["private_net"] if p["network"] != id]
    del state.networks[id]
    return 204, None


def _network_action(state: State, id: int, command: str, change) -> tuple[int, dict]:
    network = _get(state, id)
    state.check_unlocked("network", id)
    change(network)
    return 201, action_body(state, state.new_action(command, [("network", id)]))


@route("POST", "/networks/{id:int}/actions/add_subnet")
def add_subnet(state: State, req: Request, id: int):
    network = _get(state, id)
    sub = _make_subnet(state, network, req.body or {}, "subnet")
    return _network_action(state, id, "add_subnet", lambda n: n["subnets"].append(sub))


@route("POST", "/networks/{id:int}/actions/delete_subnet")
def delete_subnet(state: State, req: Request, id: int):
    network = _get(state, id)
    b = Body(req.body)
    ip_range = b.str("ip_range", required=True)
    b.done()
    sub = next((s for s in network["subnets"] if s["ip_range"] == ip_range), None)
    if sub is None:
        raise ApiError("not_found", f"subnet {ip_range} not found")
    net = ipaddress.ip_network(ip_range)
    for s in state.servers.values():
        for p in s["private_net"]:
            if p["network"] == id and ipaddress.ip_address(p["ip"]) in net:
                raise ApiError("resource_in_use", "subnet still has attached servers")
    return _network_action(state, id, "delete_subnet", lambda n: n["subnets"].remove(sub))


@route("POST", "/networks/{id:int}/actions/add_route")
def add_route(state: State, req: Request, id: int):
    r = _route(req.body, "route")
    network = _get(state, id)
    if r in network["routes"]:
        raise ApiError("uniqueness_error", "route already exists", {"fields": [{"name": "destination"}]})
    return _network_action(state, id, "add_route", lambda n: n["routes"].append(r))


@route("POST", "/networks/{id:int}/actions/delete_route")
def delete_route(state: State, req: Request, id: int):
    r = _route(req.body, "route")
    network = _get(state, id)
    if r not in network["routes"]:
        raise ApiError("not_found", "route not found")
    return _network_action(state, id, "delete_route", lambda n: n["routes"].remove(r))


@route("POST", "/networks/{id:int}/actions/change_ip_range")
def change_ip_range(state: State, req: Request, id: int):
    b = Body(req.body)
    ip_range = b.str("ip_range", required=True)
    b.done()
    net = _private_net(ip_range, "ip_range")
    network = _get(state, id)
    if not ipaddress.ip_network(network["ip_range"]).subnet_of(net):
        raise invalid_input({"ip_range": "the ip_range can only be extended"})
    return _network_action(state, id, "change_ip_range", lambda n: n.update(ip_range=str(net)))


@route("POST", "/networks/{id:int}/actions/change_protection")
def change_protection(state: State, req: Request, id: int):
    b = Body(req.body)
    delete = b.bool("delete")
    b.done()
    return _network_action(state, id, "change_protection",
                           lambda n: delete is not None and n["protection"].update(delete=delete))


register_action_routes(route, "/networks", "network", _get)
