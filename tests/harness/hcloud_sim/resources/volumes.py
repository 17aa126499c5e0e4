"""Volumes: create (optionally attached to a server), attach/detach, resize, protection."""

from __future__ import annotations

import re

from ..errors import ApiError, invalid_input, uniqueness
from ..request import Body, Request, list_response
from ..state import State, public
from .common import Registry, action_body, register_action_routes

route = Registry()

MIN_SIZE, MAX_SIZE = 10, 10240
NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")


def _get(state: State, ident) -> dict:
    return state.get(state.volumes, ident, "volume")


def volumes_of_server(state: State, server_id: int) -> list[int]:
    return sorted(v["id"] for v in state.volumes.values() if v["server"] == server_id)


def attach_action(state: State, volume: dict, server: dict, after=None):
    """Start attaching ``volume`` to ``server``; ``volume.server`` is set when it succeeds."""
    vid, sid = volume["id"], server["id"]
    volume["_attaching"] = sid

    def done():
        volume.pop("_attaching", None)
        if vid in state.volumes and sid in state.servers:
            volume["server"] = sid

    def failed():
        volume.pop("_attaching", None)

    return state.new_action("attach_volume", [("volume", vid), ("server", sid)],
                            on_success=done, on_error=failed, after=after)


@route("GET", "/volumes")
def list_volumes(state: State, req: Request):
    statuses = req.qlist("status")
    return 200, list_response(
        req, "volumes", state.volumes.values(), public,
        extra_filter=(lambda items: [v for v in items if v["status"] in statuses]) if statuses else None)


@route("POST", "/volumes")
def create_volume(state: State, req: Request):
    b = Body(req.body)
    name = b.str("name", required=True)
    size = b.int("size", required=True)
    loc_ref = b.id_or_name("location")
    server_id = b.int("server")
    fmt = b.str("format", choices=("ext4", "xfs"))
    automount = b.bool("automount", default=False)
    labels = b.labels()
    b.done()
    if not NAME_RE.match(name):
        raise invalid_input({"name": "alphanumerics, '-', '_' and '.'; starts and ends alphanumeric; max 64"})
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise invalid_input({"size": f"size must be between {MIN_SIZE} and {MAX_SIZE} GB"})
    if (loc_ref is None) == (server_id is None):
        raise invalid_input({"location": "exactly one of location or server is required"})
    if automount and server_id is None:
        raise invalid_input({"automount": "automount requires a server"})
    if state.name_taken(state.volumes, name):
        raise uniqueness("name")
    server = None
    if server_id is not None:
        server = state.servers.get(server_id)
        if server is None:
            raise invalid_input({"server": "server not found"})
        state.check_unlocked("server", server_id)
        location = server["location"]
    else:
        location = state.location_by_name(loc_ref)
        if location is None:
            raise invalid_input({"location": "location not found"})
    vid = state.next_id()
    volume = {"id": vid, "name": name, "size": size, "server": None, "location": public(location),
              "linux_device": f"/dev/disk/by-id/scsi-0HC_Volume_{vid}", "format": fmt,
              "labels": labels or {}, "protection": {"delete": False}, "status": "creating",
              "created": state.now_iso(), "_automount": automount}
    state.volumes[vid] = volume
    action = state.new_action("create_volume", [("volume", vid)],
                              on_success=lambda: volume.update(status="available"))
    next_actions = [attach_action(state, volume, server, after=action)] if server else []
    return 201, {"volume": public(volume), "action": state.render_action(action),
                 "next_actions": [state.render_action(a) for a in next_actions]}


@route("GET", "/volumes/{id:int}")
def get_volume(state: State, req: Request, id: int):
    return 200, {"volume": public(_get(state, id))}


@route("PUT", "/volumes/{id:int}")
def update_volume(state: State, req: Request, id: int):
    volume = _get(state, id)
    b = Body(req.body)
    name = b.str("name")
    labels = b.labels()
    b.done()
    if name is not None:
        if state.name_taken(state.volumes, name, exclude=id):
            raise uniqueness("name")
        volume["name"] = name
    if labels is not None:
        volume["labels"] = labels
    return 200, {"volume": public(volume)}


@route("DELETE", "/volumes/{id:int}")
def delete_volume(state: State, req: Request, id: int):
    volume = _get(state, id)
    if volume["protection"]["delete"]:
        raise ApiError("protected", "volume is delete protected")
    if volume["server"] is not None:
        raise ApiError("resource_in_use", "volume is attached to a server; detach it first")
    state.check_unlocked("volume", id)
    del state.volumes[id]
    return 204, None


@route("POST", "/volumes/{id:int}/actions/attach")
def attach(state: State, req: Request, id: int):
    volume = _get(state, id)
    b = Body(req.body)
    server_id = b.int("server", required=True)
    automount = b.bool("automount")
    b.done()
    server = state.servers.get(server_id)
    if server is None:
        raise invalid_input({"server": "server not found"})
    state.check_unlocked("volume", id)
    state.check_unlocked("server", server_id)
    if volume["server"] is not None:
        raise ApiError("volume_already_attached", f"volume is already attached to server {volume['server']}")
    if server["location"]["id"] != volume["location"]["id"]:
        raise invalid_input({"server": "server and volume must be in the same location"})
    if automount is not None:
        volume["_automount"] = automount
    return 201, action_body(state, attach_action(state, volume, server))


@route("POST", "/volumes/{id:int}/actions/detach")
def detach(state: State, req: Request, id: int):
    volume = _get(state, id)
    state.check_unlocked("volume", id)
    if volume["server"] is None:
        raise ApiError("volume_not_attached", "volume is not attached")
    sid = volume["server"]

    def done():
        volume["server"] = None

    action = state.new_action("detach_volume", [("volume", id), ("server", sid)], on_success=done)
    return 201, action_body(state, action)


@route("POST", "/volumes/{id:int}/actions/resize")
def resize(state: State, req: Request, id: int):
    volume = _get(state, id)
    b = Body(req.body)
    size = b.number("size", required=True)
    b.done()
    if size <= volume["size"] or size > MAX_SIZE:
        raise invalid_input({"size": "volumes can only grow (up to 10240 GB)"})
    state.check_unlocked("volume", id)
    action = state.new_action("resize_volume", [("volume", id)],
                              on_success=lambda: volume.update(size=size))
    return 201, action_body(state, action)


@route("POST", "/volumes/{id:int}/actions/change_protection")
def change_protection(state: State, req: Request, id: int):
    volume = _get(state, id)
    b = Body(req.body)
    delete = b.bool("delete")
    b.done()
    if delete is not None:
        volume["protection"]["delete"] = delete
    return 201, action_body(state, state.new_action("change_protection", [("volume", id)]))


register_action_routes(route, "/volumes", "volume", _get)
