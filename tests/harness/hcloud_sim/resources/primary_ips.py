"""Primary IPs: created explicitly or automatically with a server (``auto_delete``)."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..errors import ApiError, invalid_input, uniqueness
from ..request import Body, Request, list_response
from ..state import State, public
from .common import Registry, action_body, register_action_routes

route = Registry()


def default_dns_ptr(ip: str) -> str:
    return "static." + ".".join(reversed(ip.split("."))) + ".clients.your-server.de"


def new_primary_ip(state: State, ip_type: str, datacenter: dict, *, name: str | None = None,
                   auto_delete: bool = False, assignee_id: int | None = None,
                   labels: dict | None = None) -> dict:
    pid = state.next_id()
    ip = state.allocate_ipv4() if ip_type == "ipv4" else state.allocate_ipv6_net()
    rec = {
        "id": pid,
        "name": name or f"primary_ip-{pid}",
        "ip": ip,
        "type": ip_type,
        "assignee_id": assignee_id,
        "assignee_type": "server",
        "auto_delete": auto_delete,
        "blocked": False,
        "created": state.now_iso(),
        "datacenter": public(datacenter),
        "location": public(datacenter["location"]),
        "dns_ptr": [{"ip": ip, "dns_ptr": default_dns_ptr(ip)}] if ip_type == "ipv4" else [],
        "labels": labels or {},
        "protection": {"delete": False},
    }
    state.primary_ips[pid] = rec
    return rec


def server_view(rec: dict) -> dict[str, Any]:
    """How a primary IP appears in ``server.public_net.ipv4/ipv6``."""
    if rec["type"] == "ipv4":
        ptr = rec["dns_ptr"][0]["dns_ptr"] if rec["dns_ptr"] else ""
        return {"id": rec["id"], "ip": rec["ip"], "blocked": rec["blocked"], "dns_ptr": ptr}
    return {"id": rec["id"], "ip": rec["ip"], "blocked": rec["blocked"],
            "dns_ptr": [dict(d) for d in rec["dns_ptr"]]}


def ip_in(ip: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def set_dns_ptr(rec: dict, ip: str, ptr: str | None) -> None:
    """Set (or reset, with ``ptr=None``) the reverse DNS entry of ``ip``."""
    rec["dns_ptr"] = [d for d in rec["dns_ptr"] if d["ip"] != ip]
    if ptr:
        rec["dns_ptr"].append({"ip": ip, "dns_ptr": ptr})
    elif rec["type"] == "ipv4":
        rec["dns_ptr"].append({"ip": ip, "dns_ptr": default_dns_ptr(ip)})


def assigned_to(state: State, server_id: int, ip_type: str) -> dict | None:
    for rec in state.primary_ips.values():
        if rec["assignee_id"] == server_id and rec["type"] == ip_type:
            return rec
    return None


def _get(state: State, ident) -> dict:
    return state.get(state.primary_ips, ident, "primary_ip")


@route("GET", "/primary_ips")
def list_primary_ips(state: State, req: Request):
    ip = req.q("ip")
    return 200, list_response(
        req, "primary_ips", state.primary_ips.values(), public, sort=("id", "created"),
        extra_filter=(lambda items: [p for p in items if p["ip"] == ip]) if ip else None)


@route("POST", "/primary_ips")
def create_primary_ip(state: State, req: Request):
    b = Body(req.body)
    name = b.str("name", required=True)
    ip_type = b.str("type", required=True, choices=("ipv4", "ipv6"))
    # the Feb 2026 OpenAPI file requires assignee_type, but hcloud-python 2.27 only sends it
    # together with assignee_id: required only then
    assignee_id = b.int("assignee_id", nullable=True)
    b.str("assignee_type", required=assignee_id is not None, choices=("server",))
    dc_ref = b.id_or_name("datacenter")
    loc_ref = b.id_or_name("location")
    auto_delete = b.bool("auto_delete", default=False)
    labels = b.labels()
    b.done()
    if state.name_taken(state.primary_ips, name):
        raise uniqueness("name")
    server = None
    if assignee_id is not None:
        server = state.servers.get(assignee_id)
        if server is None:
            raise invalid_input({"assignee_id": "server not found"})
        if server["status"] != "off":
            raise ApiError("server_not_stopped", "server must be powered off to assign a primary IP")
        if assigned_to(state, assignee_id, ip_type):
            raise ApiError(f"server_has_{ip_type}", f"server already has a primary {ip_type}")
        dc = state.datacenters[server["datacenter"]["id"]]
    elif dc_ref is not None:
        dc = state.by_id_or_name(state.datacenters, dc_ref)
        if dc is None:
            raise invalid_input({"datacenter": "datacenter not found"})
    elif loc_ref is not None:
        loc = state.location_by_name(loc_ref)
        if loc is None:
            raise invalid_input({"location": "location not found"})
        dc = state.datacenter_for_location(loc["id"])
    else:
        raise invalid_input({"location": "one of location, datacenter or assignee_id is required"})
    rec = new_primary_ip(state, ip_type, dc, name=name, auto_delete=auto_delete,
                         assignee_id=assignee_id, labels=labels)
    action = None
    if server is not None:
        action = state.new_action("assign_primary_ip", [("primary_ip", rec["id"]), ("server", server["id"])])
    body = {"primary_ip": public(rec)}
    if action is not None:  # optional and not nullable in the API description
        body["action"] = state.render_action(action)
    return 201, body


@route("GET", "/primary_ips/{id:int}")
def get_primary_ip(state: State, req: Request, id: int):
    return 200, {"primary_ip": public(_get(state, id))}


@route("PUT", "/primary_ips/{id:int}")
def update_primary_ip(state: State, req: Request, id: int):
    rec = _get(state, id)
    b = Body(req.body)
    name = b.str("name")
    labels = b.labels()
    auto_delete = b.bool("auto_delete")
    b.done()
    if name is not None:
        if state.name_taken(state.primary_ips, name, exclude=id):
            raise uniqueness("name")
        rec["name"] = name
    if labels is not None:
        rec["labels"] = labels
    if auto_delete is not None:
        rec["auto_delete"] = auto_delete
    return 200, {"primary_ip": public(rec)}


@route("DELETE", "/primary_ips/{id:int}")
def delete_primary_ip(state: State, req: Request, id: int):
    rec = _get(state, id)
    if rec["protection"]["delete"]:
        raise ApiError("protected", "primary IP is delete protected")
    if rec["assignee_id"] is not None:
        raise ApiError("must_be_unassigned", "primary IP is still assigned; unassign it first")
    state.check_unlocked("primary_ip", id)
    del state.primary_ips[id]
    return 204, None


@route("POST", "/primary_ips/{id:int}/actions/assign")
def assign(state: State, req: Request, id: int):
    rec = _get(state, id)
    b = Body(req.body)
    server_id = b.int("assignee_id", required=True)
    b.str("assignee_type", required=True, choices=("server",))
    b.done()
    server = state.servers.get(server_id)
    if server is None:
        raise invalid_input({"assignee_id": "server not found"})
    if rec["assignee_id"] is not None:
        raise ApiError("primary_ip_already_assigned", "primary IP is already assigned")
    if rec["datacenter"]["id"] != server["datacenter"]["id"]:
        raise ApiError("primary_ip_datacenter_mismatch", "primary IP and server are in different data centers")
    if server["status"] != "off":
        raise ApiError("server_not_stopped", "server must be powered off to assign a primary IP")
    if assigned_to(state, server_id, rec["type"]):
        raise ApiError(f"server_has_{rec['type']}", f"server already has a primary {rec['type']}")
    state.check_unlocked("primary_ip", id)
    state.check_unlocked("server", server_id)
    rec["assignee_id"] = server_id
    action = state.new_action("assign_primary_ip", [("primary_ip", id), ("server", server_id)])
    return 201, action_body(state, action)


@route("POST", "/primary_ips/{id:int}/actions/unassign")
def unassign(state: State, req: Request, id: int):
    rec = _get(state, id)
    if rec["assignee_id"] is None:
        raise ApiError("primary_ip_not_assigned", "primary IP is not assigned", status=422)
    server = state.servers.get(rec["assignee_id"])
    if server is not None and server["status"] != "off":
        raise ApiError("server_not_stopped", "server must be powered off to unassign a primary IP")
    state.check_unlocked("primary_ip", id)
    resources = [("primary_ip", id)] + ([("server", server["id"])] if server else [])
    rec["assignee_id"] = None
    action = state.new_action("unassign_primary_ip", resources)
    return 201, action_body(state, action)


@route("POST", "/primary_ips/{id:int}/actions/change_dns_ptr")
def change_dns_ptr(state: State, req: Request, id: int):
    rec = _get(state, id)
    b = Body(req.body)
    ip = b.str("ip", required=True)
    ptr = b.str("dns_ptr", required=True, nullable=True)
    b.done()
    if not ip_in(ip, rec["ip"]):
        raise invalid_input({"ip": "ip does not belong to this primary IP"})
    set_dns_ptr(rec, ip, ptr)
    action = state.new_action("change_dns_ptr", [("primary_ip", id)])
    return 201, action_body(state, action)


@route("POST", "/primary_ips/{id:int}/actions/change_protection")
def change_protection(state: State, req: Request, id: int):
    rec = _get(state, id)
    b = Body(req.body)
    delete = b.bool("delete")
    b.done()
    if delete is not None:
        rec["protection"]["delete"] = delete
    action = state.new_action("change_protection", [("primary_ip", id)])
    return 201, action_body(state, action)


register_action_routes(route, "/primary_ips", "primary_ip", _get)
