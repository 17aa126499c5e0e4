"""Read-only catalogue endpoints: locations, data centers, server types, images."""

from __future__ import annotations

from ..errors import ApiError
from ..request import Request, list_response
from ..state import State, public
from .common import Registry, register_action_routes

route = Registry()


@route("GET", "/locations")
def list_locations(state: State, req: Request):
    return 200, list_response(req, "locations", state.locations.values(), public,
                              label_selector=False, sort=("id", "name"))


@route("GET", "/locations/{id:int}")
def get_location(state: State, req: Request, id: int):
    return 200, {"location": public(state.get(state.locations, id, "location"))}


@route("GET", "/datacenters")
def list_datacenters(state: State, req: Request):
    recommendation = min(state.datacenters, key=lambda i: state.datacenters[i]["location"]["id"])
    return 200, list_response(req, "datacenters", state.datacenters.values(), public,
                              label_selector=False, sort=("id", "name"),
                              extra={"recommendation": recommendation})


@route("GET", "/datacenters/{id:int}")
def get_datacenter(state: State, req: Request, id: int):
    return 200, {"datacenter": public(state.get(state.datacenters, id, "datacenter"))}


@route("GET", "/server_types")
def list_server_types(state: State, req: Request):
    return 200, list_response(req, "server_types", state.server_types.values(), public,
                              label_selector=False, sort=("id", "name"))


@route("GET", "/server_types/{id:int}")
def get_server_type(state: State, req: Request, id: int):
    return 200, {"server_type": public(state.get(state.server_types, id, "server_type"))}


def _image_filter(req: Request):
    def apply(items):
        types = req.qlist("type")
        statuses = req.qlist("status")
        arch = req.q("architecture")
        include_deprecated = req.qbool("include_deprecated")
        bound_to = req.qlist("bound_to")
        out = []
        for img in items:
            if types and img["type"] not in types:
                continue
            if statuses and img["status"] not in statuses:
                continue
            if arch and img["architecture"] != arch:
                continue
            if img.get("deprecated") and not include_deprecated:
                continue
            if bound_to and str(img.get("bound_to")) not in bound_to:
                continue
            out.append(img)
        return out
    return apply


@route("GET", "/images")
def list_images(state: State, req: Request):
    return 200, list_response(req, "images", state.images.values(), public, extra_filter=_image_filter(req))


@route("GET", "/images/{id:int}")
def get_image(state: State, req: Request, id: int):
    return 200, {"image": public(state.get(state.images, id, "image"))}


@route("PUT", "/images/{id:int}")
def update_image(state: State, req: Request, id: int):
    img = state.get(state.images, id, "image")
    if img["type"] == "system":
        raise ApiError("forbidden", "system images cannot be modified")
    return 200, {"image": public(img)}


@route("DELETE", "/images/{id:int}")
def delete_image(state: State, req: Request, id: int):
    img = state.get(state.images, id, "image")
    if img["type"] == "system":
        raise ApiError("forbidden", "system images cannot be deleted")
    del state.images[id]
    return 204, None


register_action_routes(route, "/images", "image", lambda s, i: s.get(s.images, i, "image"))
