"""DNS zones (``/zones``) and RRSets (``/zones/{id_or_name}/rrsets``), the Cloud DNS API.

Primary zones get a default SOA and three NS RRSets; every change bumps the SOA serial.
Zones are addressed by ID or name; RRSets by ``{name}/{type}`` (``@`` is the apex).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .. import selectors
from ..errors import ApiError, invalid_input, not_found, uniqueness
from ..request import Body, Request, apply_common_filters, apply_sort, list_response, paginate
from ..state import State, public
from .common import Registry, action_body, list_actions

route = Registry()

RR_TYPES = ("A", "AAAA", "CAA", "CNAME", "DS", "HINFO", "HTTPS", "MX", "NS", "PTR", "RP", "SOA",
            "SRV", "SVCB", "TLSA", "TXT")
NAMESERVERS = ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com.", "helium.ns.hetzner.de."]
TTL_MIN, TTL_MAX = 60, 2147483647
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
ZONE_NAME_RE = re.compile(rf"^(?:xn--)?{_LABEL}(?:\.{_LABEL})+$")
RR_NAME_RE = re.compile(r"^(?:@|\*|(?:\*\.)?[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*)$")
HOSTNAME_VALUE_RE = re.compile(r"^(?:@|[A-Za-z0-9_*](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?)$")


# ----- helpers ---------------------------------------------------------------------------------

def find_zone(state: State, ident: str) -> dict:
    zone = None
    if ident.isdigit():
        zone = state.zones.get(int(ident))
    if zone is None:
        zone = next((z for z in state.zones.values() if z["name"] == ident), None)
    if zone is None:
        raise not_found("zone", int(ident) if ident.isdigit() else ident)
    return zone


def _primary(zone: dict) -> None:
    if zone["mode"] != "primary":
        raise ApiError("incorrect_zone_mode", "this operation is only supported for zones in primary mode")


def _rrsets(state: State, zone: dict) -> dict[tuple[str, str], dict]:
    return state.rrsets.setdefault(zone["id"], {})


def _find_rrset(state: State, zone: dict, name: str, rtype: str) -> dict:
    rr = _rrsets(state, zone).get((name, rtype))
    if rr is None:
        raise not_found("rrset", f"{name}/{rtype}")
    return rr


def _bump_serial(state: State, zone: dict) -> None:
    zone["_serial"] += 1
    soa = _rrsets(state, zone).get(("@", "SOA"))
    if soa:
        soa["records"][0]["value"] = _soa_value(zone)


def _soa_value(zone: dict) -> str:
    return f"{NAMESERVERS[0]} dns.hetzner.com. {zone['_serial']} 86400 10800 3600000 3600"


def render_zone(state: State, zone: dict) -> dict:
    out = public(zone)
    out["record_count"] = sum(len(r["records"]) for r in _rrsets(state, zone).values())
    return out


def render_rrset(rr: dict) -> dict:
    return public(rr)


def _check_ttl(ttl: Any, field: str = "ttl", nullable: bool = True) -> None:
    if ttl is None and nullable:
        return
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not TTL_MIN <= ttl <= TTL_MAX:
        raise invalid_input({field: f"must be between {TTL_MIN} and {TTL_MAX}"})


def _value_error(rtype: str, value: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "value must be a non-empty string"
    if rtype == "A":
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return f"{value!r} is not an IPv4 address"
    elif rtype == "AAAA":
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return f"{value!r} is not an IPv6 address"
    elif rtype in ("CNAME", "NS", "PTR"):
        if not HOSTNAME_VALUE_RE.match(value):
            return f"{value!r} is not a valid host name"
    elif rtype == "MX":
        parts = value.split()
        if len(parts) != 2 or not parts[0].isdigit() or not HOSTNAME_VALUE_RE.match(parts[1]):
            return "MX value must be '<priority> <host>'"
    elif rtype == "TXT":
        if not (value.startswith('"') and value.endswith('"') and len(value) >= 2):
            return 'TXT values must be quoted, e.g. "\\"v=spf1 -all\\""'
    elif rtype == "SRV":
        parts = value.split()
        if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
            return "SRV value must be '<priority> <weight> <port> <target>'"
    elif rtype == "CAA":
        if not re.match(r'^\d+ [a-z]+ ".*"$', value):
            return 'CAA value must be \'<flags> <tag> "<value>"\''
    return None


def _records(rtype: str, raw: Any, field: str = "records", require_comment: bool = False,
             allow_empty: bool = False) -> list[dict]:
    if not isinstance(raw, list) or (not raw and not allow_empty):
        raise invalid_input({field: "must be a non-empty list"})
    out, seen = [], set()
    errors: dict[str, list[str]] = {}
    for i, rec in enumerate(raw):
        if not isinstance(rec, dict) or "value" not in rec:
            errors.setdefault(f"{field}[{i}]", []).append("record needs a value")
            continue
        if (err := _value_error(rtype, rec["value"])) is not None:
            errors.setdefault(f"{field}[{i}].value", []).append(err)
            continue
        if rec["value"] in seen:
            errors.setdefault(f"{field}[{i}].value", []).append("record values must be distinct")
        seen.add(rec["value"])
        item = {"value": rec["value"]}
        if rec.get("comment") is not None:
            if not isinstance(rec["comment"], str):
                errors.setdefault(f"{field}[{i}].comment", []).append("Not a valid string.")
            item["comment"] = rec["comment"]
        elif require_comment:
            errors.setdefault(f"{field}[{i}].comment", []).append("Missing data for required field.")
        out.append(item)
    if errors:
        raise invalid_input(errors)
    if rtype == "CNAME" and len(out) > 1:
        raise invalid_input({field: "a CNAME RRSet can only have one record"})
    return out


def _check_rr_name(zone: dict, name: Any) -> str:
    if not isinstance(name, str) or not RR_NAME_RE.match(name):
        raise invalid_input({"name": "name must be lower case, '@' for the apex, without trailing dot"})
    if name == zone["name"] or name.endswith("." + zone["name"]):
        raise invalid_input({"name": "name must be relative to the zone (must not end with the zone name)"})
    return name


def _new_rrset(state: State, zone: dict, name: str, rtype: str, records: list[dict],
               ttl: int | None = None, labels: dict | None = None) -> dict:
    sets = _rrsets(state, zone)
    if (name, rtype) in sets:
        raise uniqueness("name", f"RRSet {name}/{rtype} already exists")
    if rtype == "CNAME" and any(n == name for n, _ in sets):
        raise invalid_input({"type": "a CNAME cannot coexist with other records of the same name"})
    if any(n == name and t == "CNAME" for n, t in sets):
        raise invalid_input({"name": f"{name} already has a CNAME record"})
    rr = {"id": f"{name}/{rtype}", "name": name, "type": rtype, "ttl": ttl, "labels": labels or {},
          "protection": {"change": False}, "records": records, "zone": zone["id"]}
    sets[(name, rtype)] = rr
    return rr


def _zone_action(state: State, zone: dict, command: str):
    return state.new_action(command, [("zone", zone["id"])])


# ----- zones -----------------------------------------------------------------------------------

@route("GET", "/zones")
def list_zones(state: State, req: Request):
    mode = req.q("mode")
    return 200, list_response(
        req, "zones", state.zones.values(), lambda z: render_zone(state, z),
        extra_filter=(lambda items: [z for z in items if z["mode"] == mode]) if mode else None)


@route("POST", "/zones")
def create_zone(state: State, req: Request):
    b = Body(req.body)
    name = b.str("name", required=True, max_len=255)
    mode = b.str("mode", required=True, choices=("primary", "secondary"))
    ttl = b.int("ttl")
    labels = b.labels()
    primaries = b.list("primary_nameservers")
    rrsets = b.list("rrsets")
    zonefile = b.str("zonefile")
    b.done()
    if not ZONE_NAME_RE.match(name):
        raise invalid_input({"name": "zone name must be a lower case domain name without trailing dot"})
    _check_ttl(ttl, nullable=True)
    if state.name_taken(state.zones, name):
        raise uniqueness("name", f"zone {name} already exists")
    if mode == "secondary" and not primaries:
        raise invalid_input({"primary_nameservers": "secondary zones need primary_nameservers"})
    if mode == "primary" and primaries:
        raise invalid_input({"primary_nameservers": "only secondary zones have primary_nameservers"})
    if rrsets and zonefile:
        raise invalid_input({"zonefile": "rrsets and zonefile are mutually exclusive"})
    if mode == "secondary" and (rrsets or zonefile):
        raise ApiError("incorrect_zone_mode", "secondary zones cannot have records")
    zone = {"id": state.next_id(), "name": name, "mode": mode, "ttl": ttl or 3600,
            "labels": labels or {}, "protection": {"delete": False}, "created": state.now_iso(),
            "status": "ok", "registrar": "unknown",
            "authoritative_nameservers": {"assigned": list(NAMESERVERS), "delegated": [],
                                          "delegation_last_check": None, "delegation_status": "unknown"},
            "_serial": int(state.now()) // 86400 * 100 + 1}
    # always a list (empty for primary zones): the zone Ansible module iterates over it
    zone["primary_nameservers"] = _primary_nameservers(primaries) if mode == "secondary" else []
    state.zones[zone["id"]] = zone
    state.rrsets[zone["id"]] = {}
    try:
        if mode == "primary":
            _new_rrset(state, zone, "@", "SOA", [{"value": _soa_value(zone)}])
            _new_rrset(state, zone, "@", "NS", [{"value": ns} for ns in NAMESERVERS])
        for i, raw in enumerate(rrsets or []):
            if not isinstance(raw, dict):
                raise invalid_input({f"rrsets[{i}]": "Not a valid object."})
            rtype = raw.get("type")
            if rtype not in RR_TYPES or rtype == "SOA":
                raise invalid_input({f"rrsets[{i}].type": "unsupported type"})
            _check_ttl(raw.get("ttl"), f"rrsets[{i}].ttl")
            errs = selectors.label_errors(raw.get("labels") or {})
            if errs:
                raise invalid_input({f"rrsets[{i}].labels": errs})
            rr_name = _check_rr_name(zone, raw.get("name"))
            recs = _records(rtype, raw.get("records"), f"rrsets[{i}].records")
            if (rr_name, rtype) == ("@", "NS"):
                _rrsets(state, zone)[("@", "NS")]["records"] = recs
                continue
            _new_rrset(state, zone, rr_name, rtype, recs, raw.get("ttl"), raw.get("labels"))
        if zonefile:
            _import_zonefile(state, zone, zonefile)
    except ApiError:
        del state.zones[zone["id"]]
        del state.rrsets[zone["id"]]
        raise
    action = _zone_action(state, zone, "create_zone")
    return 201, {"zone": render_zone(state, zone), "action": state.render_action(action)}


def _primary_nameservers(raw: Any) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise invalid_input({"primary_nameservers": "must be a non-empty list"})
    out = []
    for i, ns in enumerate(raw):
        if not isinstance(ns, dict) or not isinstance(ns.get("address"), str):
            raise invalid_input({f"primary_nameservers[{i}].address": "Missing data for required field."})
        try:
            ipaddress.ip_address(ns["address"])
        except ValueError:
            raise invalid_input({f"primary_nameservers[{i}].address": "must be an IP address"}) from None
        item = {"address": ns["address"], "port": ns.get("port", 53)}
        for k in ("tsig_algorithm", "tsig_key"):
            if ns.get(k) is not None:
                item[k] = ns[k]
        out.append(item)
    return out


@route("GET", "/zones/{id_or_name}")
def get_zone(state: State, req: Request, id_or_name: str):
    return 200, {"zone": render_zone(state, find_zone(state, id_or_name))}


@route("PUT", "/zones/{id_or_name}")
def update_zone(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    b = Body(req.body)
    labels = b.labels()
    b.done()
    if labels is not None:
        zone["labels"] = labels
    return 200, {"zone": render_zone(state, zone)}


@route("DELETE", "/zones/{id_or_name}")
def delete_zone(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    if zone["protection"]["delete"]:
        raise ApiError("protected", f"zone {zone['name']} is delete protected")
    state.check_unlocked("zone", zone["id"])
    del state.zones[zone["id"]]
    state.rrsets.pop(zone["id"], None)
    return 201, action_body(state, _zone_action(state, zone, "delete_zone"))


@route("GET", "/zones/{id_or_name}/zonefile")
def export_zonefile(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    _primary(zone)
    lines = [f"$ORIGIN {zone['name']}.", f"$TTL {zone['ttl']}"]
    for (name, rtype), rr in sorted(_rrsets(state, zone).items(), key=lambda kv: (kv[0][1] != "SOA", kv[0])):
        ttl = "" if rr["ttl"] is None else f"{rr['ttl']} "
        for rec in rr["records"]:
            comment = f" ; {rec['comment']}" if rec.get("comment") else ""
            lines.append(f"{name} {ttl}IN {rtype} {rec['value']}{comment}")
    return 200, {"zonefile": "\n".join(lines) + "\n"}


def _import_zonefile(state: State, zone: dict, text: str) -> None:
    """Minimal zone file parser: ``name [ttl] [IN] TYPE value [; comment]`` per line."""
    parsed: dict[tuple[str, str], dict] = {}
    origin = zone["name"] + "."
    for lineno, raw_line in enumerate(text.splitlines(), 1):
        line, _, comment = raw_line.partition(";")
        if not line.strip():
            continue
        if line.startswith("$ORIGIN"):
            if line.split()[1].rstrip(".") != zone["name"]:
                raise invalid_input({"zonefile": f"line {lineno}: $ORIGIN does not match the zone"})
            continue
        if line.startswith("$TTL"):
            zone["ttl"] = int(line.split()[1])
            continue
        parts = line.split()
        if len(parts) < 3:
            raise invalid_input({"zonefile": f"line {lineno}: cannot parse {raw_line!r}"})
        name = parts.pop(0)
        ttl = int(parts.pop(0)) if parts[0].isdigit() else None
        if parts[0].upper() == "IN":
            parts.pop(0)
        rtype = parts.pop(0).upper()
        value = " ".join(parts)
        if rtype not in RR_TYPES:
            raise invalid_input({"zonefile": f"line {lineno}: unsupported type {rtype}"})
        if name.endswith(origin):
            name = name[: -len(origin)].rstrip(".") or "@"
        if rtype == "SOA":
            continue
        if (err := _value_error(rtype, value)) is not None:
            raise invalid_input({"zonefile": f"line {lineno}: {err}"})
        rr = parsed.setdefault((name, rtype), {"ttl": ttl, "records": []})
        rec = {"value": value}
        if comment.strip():
            rec["comment"] = comment.strip()
        rr["records"].append(rec)
    sets = _rrsets(state, zone)
    soa = sets.get(("@", "SOA"))
    sets.clear()
    if soa:
        sets[("@", "SOA")] = soa
    for (name, rtype), rr in parsed.items():
        _new_rrset(state, zone, name, rtype, rr["records"], rr["ttl"])
    _bump_serial(state, zone)


@route("POST", "/zones/{id_or_name}/actions/import_zonefile")
def import_zonefile(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    b = Body(req.body)
    text = b.str("zonefile", required=True)
    b.done()
    _primary(zone)
    state.check_unlocked("zone", zone["id"])
    _import_zonefile(state, zone, text)
    return 201, action_body(state, _zone_action(state, zone, "import_zonefile"))


@route("POST", "/zones/{id_or_name}/actions/change_ttl")
def change_zone_ttl(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    b = Body(req.body)
    ttl = b.int("ttl", required=True)
    b.done()
    _check_ttl(ttl, nullable=False)
    _primary(zone)
    state.check_unlocked("zone", zone["id"])
    zone["ttl"] = ttl
    _bump_serial(state, zone)
    return 201, action_body(state, _zone_action(state, zone, "change_ttl"))


@route("POST", "/zones/{id_or_name}/actions/change_protection")
def change_zone_protection(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    b = Body(req.body)
    delete = b.bool("delete")
    b.done()
    if delete is not None:
        zone["protection"]["delete"] = delete
    return 201, action_body(state, _zone_action(state, zone, "change_protection"))


@route("POST", "/zones/{id_or_name}/actions/change_primary_nameservers")
def change_primary_nameservers(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    b = Body(req.body)
    raw = b.list("primary_nameservers", required=True)
    b.done()
    if zone["mode"] != "secondary":
        raise ApiError("incorrect_zone_mode", "only secondary zones have primary nameservers")
    zone["primary_nameservers"] = _primary_nameservers(raw)
    return 201, action_body(state, _zone_action(state, zone, "change_primary_nameservers"))


@route("GET", "/zones/actions")
def list_all_zone_actions(state: State, req: Request):
    return 200, list_actions(state, req, lambda a: any(k == "zone" for k, _ in a.resources))


@route("GET", "/zones/actions/{id:int}")
def get_any_zone_action(state: State, req: Request, id: int):
    action = state.actions.get(id)
    if action is None or not any(k == "zone" for k, _ in action.resources):
        raise not_found("action", id)
    return 200, action_body(state, action)


@route("GET", "/zones/{id_or_name}/actions")
def list_zone_actions(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    return 200, list_actions(state, req, lambda a: a.involves("zone", zone["id"]))


@route("GET", "/zones/{id_or_name}/actions/{action_id:int}")
def get_zone_action(state: State, req: Request, id_or_name: str, action_id: int):
    zone = find_zone(state, id_or_name)
    action = state.actions.get(action_id)
    if action is None or not action.involves("zone", zone["id"]):
        raise not_found("action", action_id)
    return 200, action_body(state, action)


# ----- rrsets ----------------------------------------------------------------------------------

@route("GET", "/zones/{id_or_name}/rrsets")
def list_rrsets(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    _primary(zone)
    items = sorted(_rrsets(state, zone).values(), key=lambda r: (r["name"], r["type"]))
    items = apply_common_filters(req, items)
    types = req.qlist("type")
    if types:
        items = [r for r in items if r["type"] in types]
    rendered = apply_sort(req, [render_rrset(r) for r in items], ("id", "name", "created"))
    return 200, paginate(req, "rrsets", rendered)


@route("POST", "/zones/{id_or_name}/rrsets")
def create_rrset(state: State, req: Request, id_or_name: str):
    zone = find_zone(state, id_or_name)
    b = Body(req.body)
    name = b.str("name", required=True)
    rtype = b.str("type", required=True, choices=RR_TYPES)
    ttl = b.int("ttl", nullable=True)
    labels = b.labels()
    raw = b.list("records", required=True)
    b.done()
    _primary(zone)
    _check_ttl(ttl)
    if rtype == "SOA":
        raise invalid_input({"type": "the SOA record is managed by the API"})
    name = _check_rr_name(zone, name)
    rr = _new_rrset(state, zone, name, rtype, _records(rtype, raw), ttl, labels)
    _bump_serial(state, zone)
    action = _zone_action(state, zone, "create_rrset")
    return 201, {"rrset": render_rrset(rr), "action": state.render_action(action)}


def _rrset_path(fn):
    """Resolve zone + rrset for the ``/zones/{z}/rrsets/{name}/{type}`` routes."""
    def handler(state: State, req: Request, id_or_name: str, rr_name: str, rr_type: str):
        zone = find_zone(state, id_or_name)
        _primary(zone)
        if rr_type not in RR_TYPES:
            raise invalid_input({"type": f"unknown RRSet type {rr_type!r}"})
        return fn(state, req, zone, rr_name, rr_type)
    handler.__name__ = fn.__name__
    return handler


RRSET = "/zones/{id_or_name}/rrsets/{rr_name}/{rr_type}"


def _changeable(rr: dict) -> None:
    if rr["protection"]["change"]:
        raise ApiError("protected", f"RRSet {rr['id']} is change protected")


@route("GET", RRSET)
@_rrset_path
def get_rrset(state, req, zone, rr_name, rr_type):
    return 200, {"rrset": render_rrset(_find_rrset(state, zone, rr_name, rr_type))}


@route("PUT", RRSET)
@_rrset_path
def update_rrset(state, req, zone, rr_name, rr_type):
    rr = _find_rrset(state, zone, rr_name, rr_type)
    b = Body(req.body)
    labels = b.labels()
    b.done()
    if labels is not None:
        rr["labels"] = labels
    return 200, {"rrset": render_rrset(rr)}


@route("DELETE", RRSET)
@_rrset_path
def delete_rrset(state, req, zone, rr_name, rr_type):
    rr = _find_rrset(state, zone, rr_name, rr_type)
    _changeable(rr)
    if rr_type == "SOA" or (rr_name, rr_type) == ("@", "NS"):
        raise invalid_input({"type": "the SOA and apex NS RRSets cannot be deleted"})
    del _rrsets(state, zone)[(rr_name, rr_type)]
    _bump_serial(state, zone)
    return 201, action_body(state, _zone_action(state, zone, "delete_rrset"))


@route("POST", RRSET + "/actions/add_records")
@_rrset_path
def add_records(state, req, zone, rr_name, rr_type):
    b = Body(req.body)
    raw = b.list("records", required=True)
    ttl = b.int("ttl", nullable=True)
    b.done()
    _check_ttl(ttl)
    records = _records(rr_type, raw)
    rr = _rrsets(state, zone).get((rr_name, rr_type))
    if rr is None:
        _new_rrset(state, zone, _check_rr_name(zone, rr_name), rr_type, records, ttl)
    else:
        _changeable(rr)
        existing = {r["value"] for r in rr["records"]}
        merged = rr["records"] + [r for r in records if r["value"] not in existing]
        rr["records"] = _records(rr_type, merged)
        if ttl is not None:
            rr["ttl"] = ttl
    _bump_serial(state, zone)
    return 201, action_body(state, _zone_action(state, zone, "add_rrset_records"))


@route("POST", RRSET + "/actions/remove_records")
@_rrset_path
def remove_records(state, req, zone, rr_name, rr_type):
    rr = _find_rrset(state, zone, rr_name, rr_type)
    b = Body(req.body)
    raw = b.list("records", required=True)
    b.done()
    _changeable(rr)
    values = {r.get("value") for r in raw if isinstance(r, dict)}
    rr["records"] = [r for r in rr["records"] if r["value"] not in values]
    if not rr["records"]:
        del _rrsets(state, zone)[(rr_name, rr_type)]
    _bump_serial(state, zone)
    return 201, action_body(state, _zone_action(state, zone, "remove_rrset_records"))


@route("POST", RRSET + "/actions/set_records")
@_rrset_path
def set_records(state, req, zone, rr_name, rr_type):
    rr = _find_rrset(state, zone, rr_name, rr_type)
    b = Body(req.body)
    raw = b.list("records", required=True)
    b.done()
    _changeable(rr)
    rr["records"] = _records(rr_type, raw)
    _bump_serial(state, zone)
    return 201, action_body(state, _zone_action(state, zone, "set_rrset_records"))


@route("POST", RRSET + "/actions/update_records")
@_rrset_path
def update_records(state, req, zone, rr_name, rr_type):
    rr = _find_rrset(state, zone, rr_name, rr_type)
    b = Body(req.body)
    raw = b.list("records", required=True)
    b.done()
    _changeable(rr)
    updates = _records(rr_type, raw, require_comment=True)
    by_value = {r["value"]: r for r in rr["records"]}
    for upd in updates:
        if upd["value"] not in by_value:
            raise invalid_input({"records": f"record {upd['value']!r} is not part of the RRSet"})
    for upd in updates:
        by_value[upd["value"]]["comment"] = upd["comment"]
    # the API reference lists 200 (not 201) for this operation
    return 200, action_body(state, _zone_action(state, zone, "update_rrset_records"))


@route("POST", RRSET + "/actions/change_ttl")
@_rrset_path
def change_rrset_ttl(state, req, zone, rr_name, rr_type):
    rr = _find_rrset(state, zone, rr_name, rr_type)
    b = Body(req.body)
    if "ttl" not in b.data:
        b.fail("ttl", "Missing data for required field.")
    ttl = b.int("ttl", nullable=True)
    b.done()
    _check_ttl(ttl)
    _changeable(rr)
    rr["ttl"] = ttl
    _bump_serial(state, zone)
    return 201, action_body(state, _zone_action(state, zone, "change_rrset_ttl"))


@route("POST", RRSET + "/actions/change_protection")
@_rrset_path
def change_rrset_protection(state, req, zone, rr_name, rr_type):
    rr = _find_rrset(state, zone, rr_name, rr_type)
    b = Body(req.body)
    change = b.bool("change", required=True)
    b.done()
    rr["protection"]["change"] = change
    return 201, action_body(state, _zone_action(state, zone, "change_rrset_protection"))
