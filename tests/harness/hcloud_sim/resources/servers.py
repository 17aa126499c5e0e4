"""Servers: create (user_data, labels, ssh_keys, firewalls, networks, volumes, public_net
with primary IPs), status transitions driven by actions, power actions, delete."""

from __future__ import annotations

import re
import secrets
from typing import Any

from ..errors import ApiError, invalid_input, uniqueness
from ..request import Body, Request, list_response
from ..state import Action, State, public
from . import firewalls as fw_mod
from . import networks as net_mod
from . import primary_ips as pip_mod
from . import volumes as vol_mod
from .common import Registry, action_body, register_action_routes

route = Registry()

HOSTNAME_RE = re.compile(r"^(?=.{1,63}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")
USER_DATA_MAX = 32 * 1024
LOCATION_PREFERENCE = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")


def _get(state: State, ident) -> dict:
    return state.get(state.servers, ident, "server")


def render(state: State, server: dict) -> dict:
    out = public(server)
    sid = server["id"]
    v4 = pip_mod.assigned_to(state, sid, "ipv4")
    v6 = pip_mod.assigned_to(state, sid, "ipv6")
    out["public_net"] = {
        "ipv4": pip_mod.server_view(v4) if v4 else None,
        "ipv6": pip_mod.server_view(v6) if v6 else None,
        "floating_ips": [],
        "firewalls": fw_mod.firewalls_of_server(state, sid),
    }
    out["volumes"] = vol_mod.volumes_of_server(state, sid)
    out["locked"] = state.is_locked("server", sid)
    return out


def availability(server_type: dict, location_id: int) -> str | None:
    for sl in server_type["locations"]:
        if sl["id"] == location_id:
            return sl["_availability"]
    return None


def _resolve_image(state: State, ref: Any, architecture: str) -> dict:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        img = state.images.get(int(ref))
        if img is None:
            raise invalid_input({"image": f"image {ref} not found"})
    else:
        candidates = [i for i in state.images.values() if i["name"] == ref]
        if not candidates:
            raise invalid_input({"image": f"image {ref!r} not found"})
        img = next((i for i in candidates if i["architecture"] == architecture), None)
        if img is None:
            raise invalid_input({"image": f"image {ref!r} is not available for architecture {architecture}"})
    if img["architecture"] != architecture:
        raise invalid_input({"image": "image architecture does not match the server type"})
    if img["status"] != "available":
        raise ApiError("resource_unavailable", f"image {img['id']} is not available")
    return img


def _choose_datacenter(state: State, server_type: dict, loc_ref: Any, dc_ref: Any) -> dict:
    if loc_ref is not None and dc_ref is not None:
        raise invalid_input({"location": "location and datacenter are mutually exclusive"})
    if dc_ref is not None:
        dc = state.by_id_or_name(state.datacenters, dc_ref)
        if dc is None:
            raise invalid_input({"datacenter": f"datacenter {dc_ref!r} not found"})
    elif loc_ref is not None:
        loc = state.location_by_name(loc_ref)
        if loc is None:
            raise invalid_input({"location": f"location {loc_ref!r} not found"})
        dc = state.datacenter_for_location(loc["id"])
    else:
        for name in LOCATION_PREFERENCE:
            loc = state.location_by_name(name)
            if loc and availability(server_type, loc["id"]) in ("available", "deprecated"):
                return state.datacenter_for_location(loc["id"])
        raise ApiError("resource_unavailable", f"server type {server_type['name']} is not available")
    if availability(server_type, dc["location"]["id"]) not in ("available", "deprecated"):
        raise ApiError("resource_unavailable",
                       f"server type {server_type['name']} is not available in location {dc['location']['name']}")
    return dc


def _set_status(state: State, sid: int, status: str):
    def apply():
        if sid in state.servers:
            state.servers[sid]["status"] = status
    return apply


def _check_protection(server: dict, kind: str) -> None:
    if server["protection"][kind]:
        raise ApiError("protected", f"server {server['id']} is {kind} protected")


@route("GET", "/servers")
def list_servers(state: State, req: Request):
    statuses = req.qlist("status")
    return 200, list_response(
        req, "servers", state.servers.values(), lambda s: render(state, s),
        extra_filter=(lambda items: [s for s in items if s["status"] in statuses]) if statuses else None)


@route("POST", "/servers")
def create_server(state: State, req: Request):
    b = Body(req.body)
    name = b.str("name", required=True)
    st_ref = b.id_or_name("server_type", required=True)
    image_ref = b.id_or_name("image", required=True)
    loc_ref = b.id_or_name("location")
    dc_ref = b.id_or_name("datacenter")
    start = b.bool("start_after_create", default=True)
    ssh_key_refs = b.list("ssh_keys") or []
    volume_ids = b.list("volumes") or []
    network_ids = b.list("networks") or []
    fw_refs = b.list("firewalls") or []
    user_data = b.str("user_data")
    labels = b.labels()
    b.bool("automount", default=False)
    public_net = b.dict("public_net") or {}
    placement_group = b.int("placement_group")
    b.done()

    if not HOSTNAME_RE.match(name):
        raise invalid_input({"name": "name must be a valid hostname (RFC 1123)"})
    if user_data is not None and len(user_data.encode()) > USER_DATA_MAX:
        raise invalid_input({"user_data": f"user_data must not exceed {USER_DATA_MAX} bytes"})
    if placement_group is not None:
        raise invalid_input({"placement_group": "placement group not found"})
    if state.name_taken(state.servers, name):
        raise uniqueness("name")
    if state.server_limit is not None and len(state.servers) >= state.server_limit:
        raise ApiError("resource_limit_exceeded", "server limit exceeded",
                       {"limits": [{"name": "server_limit"}]})

    server_type = state.by_id_or_name(state.server_types, st_ref)
    if server_type is None:
        raise invalid_input({"server_type": f"server type {st_ref!r} not found"})
    image = _resolve_image(state, image_ref, server_type["architecture"])
    dc = _choose_datacenter(state, server_type, loc_ref, dc_ref)
    location = dc["location"]

    keys = []
    for ref in ssh_key_refs:
        key = state.by_id_or_name(state.ssh_keys, ref)
        if key is None:
            raise invalid_input({"ssh_keys": f"SSH key {ref!r} not found"})
        keys.append(key)
    volumes = []
    for vid in volume_ids:
        vol = state.volumes.get(vid) if isinstance(vid, int) else None
        if vol is None:
            raise invalid_input({"volumes": f"volume {vid!r} not found"})
        if vol["server"] is not None or vol.get("_attaching"):
            raise ApiError("volume_already_attached", f"volume {vid} is already attached")
        if vol["location"]["id"] != location["id"]:
            raise invalid_input({"volumes": f"volume {vid} is in another location"})
        volumes.append(vol)
    networks = []
    for nid in network_ids:
        net = state.networks.get(nid) if isinstance(nid, int) else None
        if net is None:
            raise invalid_input({"networks": f"network {nid!r} not found"})
        networks.append(net)
    fws = []
    for i, ref in enumerate(fw_refs):
        fid = ref.get("firewall") if isinstance(ref, dict) else None
        fw = state.firewalls.get(fid) if isinstance(fid, int) else None
        if fw is None:
            raise invalid_input({f"firewalls[{i}].firewall": f"firewall {fid!r} not found"})
        fws.append(fw)

    enable_v4 = public_net.get("enable_ipv4", True)
    enable_v6 = public_net.get("enable_ipv6", True)
    given = {}
    for kind in ("ipv4", "ipv6"):
        ref = public_net.get(kind)
        if ref is None:
            continue
        pip = state.primary_ips.get(ref) if isinstance(ref, int) else None
        if pip is None:
            raise invalid_input({f"public_net.{kind}": f"primary IP {ref!r} not found"})
        if pip["type"] != kind:
            raise ApiError("primary_ip_version_mismatch", f"primary IP {ref} is not an {kind}")
        if pip["assignee_id"] is not None:
            raise ApiError("primary_ip_assigned", f"primary IP {ref} is already assigned")
        if pip["datacenter"]["id"] != dc["id"]:
            raise ApiError("primary_ip_datacenter_mismatch", f"primary IP {ref} is in another data center")
        given[kind] = pip
    if not (enable_v4 or enable_v6 or given) and not networks:
        raise invalid_input({"networks": "a server without public IPs must be attached to a network"})

    sid = state.next_id()
    for kind, enabled in (("ipv4", enable_v4), ("ipv6", enable_v6)):
        if kind in given:
            given[kind]["assignee_id"] = sid
        elif enabled:
            pip_mod.new_primary_ip(state, kind, dc, auto_delete=True, assignee_id=sid)

    server = {
        "id": sid, "name": name, "status": "initializing", "created": state.now_iso(),
        "public_net": {},  # rendered from primary IPs and firewalls
        "private_net": [],
        "server_type": public(server_type), "datacenter": public(dc), "location": public(location),
        "image": public(image), "iso": None, "rescue_enabled": False, "backup_window": None,
        "outgoing_traffic": 0, "ingoing_traffic": 0,
        "included_traffic": next((p["included_traffic"] for p in server_type["prices"]
                                  if p["location"] == location["name"]), 0),
        "protection": {"delete": False, "rebuild": False}, "labels": labels or {},
        "load_balancers": [], "primary_disk_size": server_type["disk"], "placement_group": None,
        "volumes": [],
        "_user_data": user_data, "_ssh_keys": [k["public_key"] for k in keys],
        "_root_password": None if keys else secrets.token_urlsafe(12),
    }
    state.servers[sid] = server
    for net in networks:
        server["private_net"].append(_private_net_entry(state, server, net))
    for fw in fws:
        fw["applied_to"].append({"type": "server", "server": {"id": sid}})

    if state.hooks.on_server_create:
        server["public_net"] = render(state, server)["public_net"]
        state.hooks.on_server_create(server)
        _sync_public_net(state, server)

    create = state.new_action("create_server", [("server", sid)],
                              on_success=_set_status(state, sid, "starting" if start else "off"),
                              on_error=_set_status(state, sid, "off"))
    next_actions: list[Action] = []
    if start:
        next_actions.append(state.new_action("start_server", [("server", sid)], after=create,
                                             on_success=_set_status(state, sid, "running"),
                                             on_error=_set_status(state, sid, "off")))
    for net in networks:
        next_actions.append(state.new_action("attach_to_network", [("server", sid), ("network", net["id"])],
                                             after=create))
    for vol in volumes:
        next_actions.append(vol_mod.attach_action(state, vol, server, after=create))
    for fw in fws:
        next_actions.append(state.new_action("apply_firewall", [("firewall", fw["id"]), ("server", sid)],
                                             after=create))
    return 201, {
        "server": render(state, server),
        "action": state.render_action(create),
        "next_actions": [state.render_action(a) for a in next_actions],
        "root_password": server["_root_password"],
    }


def _sync_public_net(state: State, server: dict) -> None:
    """Carry hook edits of ``server["public_net"]`` over to the primary IP records."""
    pn = server.pop("public_net", None) or {}
    server["public_net"] = {}
    for kind in ("ipv4", "ipv6"):
        view = pn.get(kind)
        pip = pip_mod.assigned_to(state, server["id"], kind)
        if pip and isinstance(view, dict) and view.get("ip") and view["ip"] != pip["ip"]:
            pip["ip"] = view["ip"]
            for d in pip["dns_ptr"]:
                d["ip"] = view["ip"]


def _private_net_entry(state: State, server: dict, network: dict, ip: str | None = None,
                       alias_ips: list[str] | None = None, ip_range: str | None = None) -> dict:
    zone = server["location"]["network_zone"]
    addr = net_mod.allocate_ip(state, network, zone, wanted=ip, ip_range=ip_range)
    aliases = []
    for a in alias_ips or []:
        aliases.append(net_mod.allocate_ip(state, network, zone, wanted=a))
    mac = "86:00:00:%02x:%02x:%02x" % ((server["id"] >> 16) & 0xFF, (server["id"] >> 8) & 0xFF,
                                        (network["id"] + server["id"]) & 0xFF)
    return {"network": network["id"], "ip": addr, "alias_ips": aliases, "mac_address": mac}


@route("GET", "/servers/{id:int}")
def get_server(state: State, req: Request, id: int):
    return 200, {"server": render(state, _get(state, id))}


@route("PUT", "/servers/{id:int}")
def update_server(state: State, req: Request, id: int):
    server = _get(state, id)
    b = Body(req.body)
    name = b.str("name")
    labels = b.labels()
    b.done()
    if name is not None:
        if not HOSTNAME_RE.match(name):
            raise invalid_input({"name": "name must be a valid hostname (RFC 1123)"})
        if state.name_taken(state.servers, name, exclude=id):
            raise uniqueness("name")
        server["name"] = name
    if labels is not None:
        server["labels"] = labels
    return 200, {"server": render(state, server)}


@route("DELETE", "/servers/{id:int}")
def delete_server(state: State, req: Request, id: int):
    """"This immediately removes the Server from your account" (the API reference): attached
    resources are released now, the returned ``delete_server`` action finishes later."""
    server = _get(state, id)
    _check_protection(server, "delete")
    server["status"] = "deleting"
    del state.servers[id]
    for pip in list(state.primary_ips.values()):
        if pip["assignee_id"] == id:
            if pip["auto_delete"]:
                del state.primary_ips[pip["id"]]
            else:
                pip["assignee_id"] = None
    for vol in state.volumes.values():
        if vol["server"] == id:
            vol["server"] = None
    for fw in state.firewalls.values():
        fw["applied_to"] = [e for e in fw["applied_to"]
                            if not (e["type"] == "server" and e["server"]["id"] == id)]
    if state.hooks.on_server_delete:
        state.hooks.on_server_delete(server)
    return 200, action_body(state, state.new_action("delete_server", [("server", id)]))


# ----- power and other server actions ----------------------------------------------------------

def _power(command: str, during: str | None, after: str, action_name: str):
    def handler(state: State, req: Request, id: int):
        server = _get(state, id)
        state.check_unlocked("server", id)
        previous = server["status"]
        if during:
            server["status"] = during
        action = state.new_action(command, [("server", id)], on_success=_set_status(state, id, after),
                                  on_error=_set_status(state, id, previous))
        return 201, action_body(state, action)
    handler.__name__ = action_name
    route("POST", f"/servers/{{id:int}}/actions/{action_name}")(handler)
    return handler


_power("start_server", "starting", "running", "poweron")
_power("stop_server", "stopping", "off", "poweroff")
_power("shutdown_server", "stopping", "off", "shutdown")
_power("reboot_server", None, "running", "reboot")
_power("reset_server", None, "running", "reset")


@route("POST", "/servers/{id:int}/actions/rebuild")
def rebuild(state: State, req: Request, id: int):
    server = _get(state, id)
    b = Body(req.body)
    image_ref = b.id_or_name("image", required=True)
    user_data = b.str("user_data")
    b.done()
    _check_protection(server, "rebuild")
    state.check_unlocked("server", id)
    image = _resolve_image(state, image_ref, server["server_type"]["architecture"])
    previous = server["status"]
    server["status"] = "rebuilding"
    server["image"] = public(image)
    if user_data is not None:
        server["_user_data"] = user_data
    password = None if server["_ssh_keys"] else secrets.token_urlsafe(12)
    action = state.new_action("rebuild_server", [("server", id)],
                              on_success=_set_status(state, id, "running" if previous == "running" else "off"),
                              on_error=_set_status(state, id, previous))
    return 201, action_body(state, action, root_password=password)


@route("POST", "/servers/{id:int}/actions/change_type")
def change_type(state: State, req: Request, id: int):
    server = _get(state, id)
    b = Body(req.body)
    st_ref = b.id_or_name("server_type", required=True)
    upgrade_disk = b.bool("upgrade_disk", required=True)
    b.done()
    new_type = state.by_id_or_name(state.server_types, st_ref)
    if new_type is None:
        raise invalid_input({"server_type": f"server type {st_ref!r} not found"})
    state.check_unlocked("server", id)
    if server["status"] != "off":
        raise ApiError("server_not_stopped", "server must be powered off to change its type")
    if (availability(new_type, server["location"]["id"]) not in ("available", "deprecated")
            or new_type["architecture"] != server["server_type"]["architecture"]
            or new_type["disk"] < server["primary_disk_size"]):
        raise ApiError("invalid_server_type",
                       f"server type {new_type['name']} does not fit this server or is deprecated")

    def done():
        server["server_type"] = public(new_type)
        if upgrade_disk:
            server["primary_disk_size"] = new_type["disk"]

    action = state.new_action("change_server_type", [("server", id)], on_success=done)
    return 201, action_body(state, action)


@route("POST", "/servers/{id:int}/actions/change_protection")
def change_protection(state: State, req: Request, id: int):
    server = _get(state, id)
    b = Body(req.body)
    delete = b.bool("delete")
    rebuild_ = b.bool("rebuild")
    b.done()
    if delete is not None:
        server["protection"]["delete"] = delete
    if rebuild_ is not None:
        server["protection"]["rebuild"] = rebuild_
    return 201, action_body(state, state.new_action("change_protection", [("server", id)]))


@route("POST", "/servers/{id:int}/actions/enable_backup")
def enable_backup(state: State, req: Request, id: int):
    server = _get(state, id)
    state.check_unlocked("server", id)
    server["backup_window"] = "22-02"
    return 201, action_body(state, state.new_action("enable_backup", [("server", id)]))


@route("POST", "/servers/{id:int}/actions/disable_backup")
def disable_backup(state: State, req: Request, id: int):
    server = _get(state, id)
    state.check_unlocked("server", id)
    server["backup_window"] = None
    return 201, action_body(state, state.new_action("disable_backup", [("server", id)]))


@route("POST", "/servers/{id:int}/actions/enable_rescue")
def enable_rescue(state: State, req: Request, id: int):
    server = _get(state, id)
    state.check_unlocked("server", id)
    b = Body(req.body)
    b.str("type", choices=("linux64",))
    keys = b.list("ssh_keys") or []
    b.done()
    server["rescue_enabled"] = True
    password = None if keys else secrets.token_urlsafe(12)
    return 201, action_body(state, state.new_action("enable_rescue", [("server", id)]), root_password=password)


@route("POST", "/servers/{id:int}/actions/disable_rescue")
def disable_rescue(state: State, req: Request, id: int):
    server = _get(state, id)
    state.check_unlocked("server", id)
    server["rescue_enabled"] = False
    return 201, action_body(state, state.new_action("disable_rescue", [("server", id)]))


@route("POST", "/servers/{id:int}/actions/reset_password")
def reset_password(state: State, req: Request, id: int):
    server = _get(state, id)
    state.check_unlocked("server", id)
    if server["status"] != "running":
        raise ApiError("server_not_running", "server must be running to reset the password", status=422)
    server["_root_password"] = secrets.token_urlsafe(12)
    return 201, action_body(state, state.new_action("reset_password", [("server", id)]),
                            root_password=server["_root_password"])


@route("POST", "/servers/{id:int}/actions/change_dns_ptr")
def change_dns_ptr(state: State, req: Request, id: int):
    _get(state, id)
    b = Body(req.body)
    ip = b.str("ip", required=True)
    ptr = b.str("dns_ptr", required=True, nullable=True)
    b.done()
    for kind in ("ipv4", "ipv6"):
        pip = pip_mod.assigned_to(state, id, kind)
        if pip is not None and pip_mod.ip_in(ip, pip["ip"]):
            pip_mod.set_dns_ptr(pip, ip, ptr)
            return 201, action_body(state, state.new_action("change_dns_ptr", [("server", id)]))
    raise invalid_input({"ip": "ip does not belong to the server"})


@route("POST", "/servers/{id:int}/actions/attach_to_network")
def attach_to_network(state: State, req: Request, id: int):
    server = _get(state, id)
    b = Body(req.body)
    nid = b.int("network", required=True)
    ip = b.str("ip")
    alias_ips = b.list("alias_ips") or []
    ip_range = b.str("ip_range")
    b.done()
    network = state.networks.get(nid)
    if network is None:
        raise invalid_input({"network": "network not found"})
    state.check_unlocked("server", id)
    if any(p["network"] == nid for p in server["private_net"]):
        raise ApiError("server_already_attached", "server is already attached to this network")
    server["private_net"].append(_private_net_entry(state, server, network, ip, alias_ips, ip_range))
    action = state.new_action("attach_to_network", [("server", id), ("network", nid)])
    return 201, action_body(state, action)


@route("POST", "/servers/{id:int}/actions/detach_from_network")
def detach_from_network(state: State, req: Request, id: int):
    server = _get(state, id)
    b = Body(req.body)
    nid = b.int("network", required=True)
    b.done()
    state.check_unlocked("server", id)
    if not any(p["network"] == nid for p in server["private_net"]):
        raise ApiError("server_not_attached", "server is not attached to this network")
    server["private_net"] = [p for p in server["private_net"] if p["network"] != nid]
    action = state.new_action("detach_from_network", [("server", id), ("network", nid)])
    return 201, action_body(state, action)


@route("POST", "/servers/{id:int}/actions/change_alias_ips")
def change_alias_ips(state: State, req: Request, id: int):
    server = _get(state, id)
    b = Body(req.body)
    nid = b.int("network", required=True)
    alias_ips = b.list("alias_ips", required=True)
    b.done()
    entry = next((p for p in server["private_net"] if p["network"] == nid), None)
    if entry is None:
        raise ApiError("server_not_attached", "server is not attached to this network")
    state.check_unlocked("server", id)
    entry["alias_ips"] = []
    network = state.networks[nid]
    entry["alias_ips"] = [net_mod.allocate_ip(state, network, server["location"]["network_zone"], wanted=a)
                          for a in alias_ips]
    action = state.new_action("change_alias_ips", [("server", id), ("network", nid)])
    return 201, action_body(state, action)


register_action_routes(route, "/servers", "server", _get)
