"""Firewalls: rules, ``apply_to`` servers or label selectors, apply/remove/set_rules.

Firewall actions queue rather than lock (the ``firewall`` Ansible module does not wait for
the actions of a create before the next change), so only deletion checks for running
actions.
"""

from __future__ import annotations

from typing import Any

from .. import selectors
from ..errors import ApiError, invalid_input, uniqueness
from ..request import Body, Request, cidr_ok, list_response
from ..state import Action, State, public
from .common import Registry, actions_body, register_action_routes

route = Registry()

PROTOCOLS = ("tcp", "udp", "icmp", "esp", "gre")


def validate_rules(rules: Any) -> list[dict]:
    if not isinstance(rules, list):
        raise invalid_input({"rules": "Not a valid list."})
    errors: dict[str, list[str]] = {}
    out = []
    for i, rule in enumerate(rules):
        prefix = f"rules[{i}]"
        if not isinstance(rule, dict):
            errors.setdefault(prefix, []).append("Not a valid object.")
            continue
        direction, protocol = rule.get("direction"), rule.get("protocol")
        port = rule.get("port")
        src, dst = rule.get("source_ips") or [], rule.get("destination_ips") or []
        if direction not in ("in", "out"):
            errors.setdefault(f"{prefix}.direction", []).append("Must be one of: in, out.")
        if protocol not in PROTOCOLS:
            errors.setdefault(f"{prefix}.protocol", []).append("Must be one of: " + ", ".join(PROTOCOLS) + ".")
        if protocol in ("tcp", "udp"):
            if not _port_ok(port):
                errors.setdefault(f"{prefix}.port", []).append("port is required for tcp/udp: 'N', 'N-M' or 'any'")
        elif port is not None:
            errors.setdefault(f"{prefix}.port", []).append("port is only allowed for tcp and udp")
        if direction == "in":
            if not src:
                errors.setdefault(f"{prefix}.source_ips", []).append("source_ips required for direction in")
            if dst:
                errors.setdefault(f"{prefix}.destination_ips", []).append("destination_ips not allowed for direction in")
        if direction == "out":
            if not dst:
                errors.setdefault(f"{prefix}.destination_ips", []).append("destination_ips required for direction out")
            if src:
                errors.setdefault(f"{prefix}.source_ips", []).append("source_ips not allowed for direction out")
        for key, ips in (("source_ips", src), ("destination_ips", dst)):
            if not isinstance(ips, list) or not all(cidr_ok(ip) for ip in ips):
                errors.setdefault(f"{prefix}.{key}", []).append("must be a list of networks in CIDR notation")
        description = rule.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 255):
            errors.setdefault(f"{prefix}.description", []).append("Longer than maximum length 255.")
        out.append({"direction": direction, "protocol": protocol, "port": port,
                    "source_ips": list(src), "destination_ips": list(dst),
                    "description": description})
    if errors:
        raise invalid_input(errors)
    return out


def _port_ok(port: Any) -> bool:
    if not isinstance(port, str):
        return False
    if port == "any":
        return True
    lo, sep, hi = port.partition("-")
    try:
        a, b = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        return False
    return 1 <= a <= b <= 65535


def validate_apply_to(state: State, entries: Any, field: str, missing_status: int = 404) -> list[dict]:
    if not isinstance(entries, list):
        raise invalid_input({field: "Not a valid list."})
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("type") not in ("server", "label_selector"):
            raise invalid_input({f"{field}[{i}].type": "Must be one of: server, label_selector."})
        if entry["type"] == "server":
            sid = (entry.get("server") or {}).get("id")
            if not isinstance(sid, int) or sid not in state.servers:
                raise ApiError("firewall_resource_not_found", f"server {sid} not found",
                               {"fields": [{"name": f"{field}[{i}].server.id"}]}, status=missing_status)
            if {"type": "server", "server": {"id": sid}} in out:
                raise ApiError("server_already_added", f"server {sid} is listed more than once")
            out.append({"type": "server", "server": {"id": sid}})
        else:
            selector = (entry.get("label_selector") or {}).get("selector")
            try:
                selectors.parse(selector)
            except (ValueError, AttributeError) as exc:
                raise invalid_input({f"{field}[{i}].label_selector.selector": str(exc)}) from None
            out.append({"type": "label_selector", "label_selector": {"selector": selector}})
    return out


def matched_servers(state: State, selector: str) -> list[int]:
    match = selectors.compile_selector(selector)
    return [sid for sid, s in sorted(state.servers.items()) if match(s.get("labels") or {})]


def server_ids(state: State, fw: dict) -> list[int]:
    ids: list[int] = []
    for entry in fw["applied_to"]:
        if entry["type"] == "server":
            ids.append(entry["server"]["id"])
        else:
            ids.extend(matched_servers(state, entry["label_selector"]["selector"]))
    return sorted(set(i for i in ids if i in state.servers))


def firewalls_of_server(state: State, server_id: int) -> list[dict]:
    return [{"id": fw["id"], "status": "applied"}
            for fw in sorted(state.firewalls.values(), key=lambda f: f["id"])
            if server_id in server_ids(state, fw)]


def render(state: State, fw: dict) -> dict:
    out = public(fw)
    for entry in out["applied_to"]:
        if entry["type"] == "label_selector":
            entry["applied_to_resources"] = [
                {"type": "server", "server": {"id": sid}}
                for sid in matched_servers(state, entry["label_selector"]["selector"])]
    return out


def _apply_actions(state: State, fw_id: int, entries: list[dict], command: str) -> list[Action]:
    actions = []
    for entry in entries:
        if entry["type"] == "server":
            sids = [entry["server"]["id"]]
        else:
            sids = matched_servers(state, entry["label_selector"]["selector"])
        actions.append(state.new_action(command, [("firewall", fw_id)] + [("server", s) for s in sids]))
    return actions


def _get(state: State, ident) -> dict:
    return state.get(state.firewalls, ident, "firewall")


@route("GET", "/firewalls")
def list_firewalls(state: State, req: Request):
    return 200, list_response(req, "firewalls", state.firewalls.values(), lambda f: render(state, f))


@route("POST", "/firewalls")
def create_firewall(state: State, req: Request):
    b = Body(req.body)
    name = b.str("name", required=True, max_len=128)
    labels = b.labels()
    rules = b.list("rules")
    apply_to = b.list("apply_to")
    b.done()
    rules = validate_rules(rules or [])
    entries = validate_apply_to(state, apply_to or [], "apply_to", missing_status=422)
    if state.name_taken(state.firewalls, name):
        raise uniqueness("name")
    fid = state.next_id()
    fw = {"id": fid, "name": name, "labels": labels or {}, "rules": rules,
          "applied_to": entries, "created": state.now_iso()}
    state.firewalls[fid] = fw
    actions = []
    if rules:
        actions.append(state.new_action("set_firewall_rules", [("firewall", fid)]))
    actions += _apply_actions(state, fid, entries, "apply_firewall")
    return 201, {"firewall": render(state, fw), **actions_body(state, actions)}


@route("GET", "/firewalls/{id:int}")
def get_firewall(state: State, req: Request, id: int):
    return 200, {"firewall": render(state, _get(state, id))}


@route("PUT", "/firewalls/{id:int}")
def update_firewall(state: State, req: Request, id: int):
    fw = _get(state, id)
    b = Body(req.body)
    name = b.str("name", max_len=128)
    labels = b.labels()
    b.done()
    if name is not None:
        if state.name_taken(state.firewalls, name, exclude=id):
            raise uniqueness("name")
        fw["name"] = name
    if labels is not None:
        fw["labels"] = labels
    return 200, {"firewall": render(state, fw)}


@route("DELETE", "/firewalls/{id:int}")
def delete_firewall(state: State, req: Request, id: int):
    fw = _get(state, id)
    if fw["applied_to"]:
        raise ApiError("resource_in_use", "firewall is still applied to resources")
    state.check_unlocked("firewall", id)
    del state.firewalls[id]
    return 204, None


@route("POST", "/firewalls/{id:int}/actions/apply_to_resources")
def apply_to_resources(state: State, req: Request, id: int):
    fw = _get(state, id)
    b = Body(req.body)
    raw = b.list("apply_to", required=True)
    b.done()
    entries = validate_apply_to(state, raw, "apply_to")
    for entry in entries:
        if entry in fw["applied_to"]:
            raise ApiError("firewall_already_applied", "firewall is already applied to this resource")
    fw["applied_to"].extend(entries)
    return 201, actions_body(state, _apply_actions(state, id, entries, "apply_firewall"))


@route("POST", "/firewalls/{id:int}/actions/remove_from_resources")
def remove_from_resources(state: State, req: Request, id: int):
    fw = _get(state, id)
    b = Body(req.body)
    raw = b.list("remove_from", required=True)
    b.done()
    entries = validate_apply_to(state, raw, "remove_from")
    for entry in entries:
        if entry not in fw["applied_to"]:
            if entry["type"] == "server" and entry["server"]["id"] in server_ids(state, fw):
                raise ApiError("firewall_managed_by_label_selector",
                               "firewall is applied to this server by a label selector")
            raise ApiError("firewall_already_removed", "firewall is not applied to this resource")
    actions = _apply_actions(state, id, entries, "remove_firewall")
    for entry in entries:
        fw["applied_to"].remove(entry)
    return 201, actions_body(state, actions)


@route("POST", "/firewalls/{id:int}/actions/set_rules")
def set_rules(state: State, req: Request, id: int):
    fw = _get(state, id)
    b = Body(req.body)
    raw = b.list("rules", required=True)
    b.done()
    rules = validate_rules(raw)
    fw["rules"] = rules
    actions = [state.new_action("set_firewall_rules", [("firewall", id)])]
    actions += [state.new_action("apply_firewall", [("firewall", id), ("server", sid)])
                for sid in server_ids(state, fw)]
    return 201, actions_body(state, actions)


register_action_routes(route, "/firewalls", "firewall", _get)
