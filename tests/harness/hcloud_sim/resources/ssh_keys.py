"""SSH keys: CRUD, fingerprint (MD5 of the key blob), unique name and unique key."""

from __future__ import annotations

import base64
import binascii
import hashlib

from ..errors import invalid_input, uniqueness
from ..request import Body, Request, list_response
from ..state import State, public
from .common import Registry

route = Registry()

KEY_TYPES = ("ssh-rsa", "ssh-ed25519", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def fingerprint(public_key: str) -> str | None:
    parts = public_key.strip().split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def _get(state: State, ident) -> dict:
    return state.get(state.ssh_keys, ident, "ssh_key")


@route("GET", "/ssh_keys")
def list_ssh_keys(state: State, req: Request):
    fp = req.q("fingerprint")
    return 200, list_response(
        req, "ssh_keys", state.ssh_keys.values(), public, sort=("id", "name"),
        extra_filter=(lambda items: [k for k in items if k["fingerprint"] == fp]) if fp else None)


@route("POST", "/ssh_keys")
def create_ssh_key(state: State, req: Request):
    b = Body(req.body)
    name = b.str("name", required=True)
    key = b.str("public_key", required=True)
    labels = b.labels()
    b.done()
    fp = fingerprint(key)
    if fp is None:
        raise invalid_input({"public_key": "invalid public key"})
    if not name.strip():
        raise invalid_input({"name": "name must not be empty"})
    if state.name_taken(state.ssh_keys, name):
        raise uniqueness("name", "SSH key with the same name already exists")
    if any(k["fingerprint"] == fp for k in state.ssh_keys.values()):
        raise uniqueness("public_key", "SSH key with the same fingerprint already exists")
    rec = {"id": state.next_id(), "name": name, "fingerprint": fp, "public_key": key.strip(),
           "labels": labels or {}, "created": state.now_iso()}
    state.ssh_keys[rec["id"]] = rec
    return 201, {"ssh_key": public(rec)}


@route("GET", "/ssh_keys/{id:int}")
def get_ssh_key(state: State, req: Request, id: int):
    return 200, {"ssh_key": public(_get(state, id))}


@route("PUT", "/ssh_keys/{id:int}")
def update_ssh_key(state: State, req: Request, id: int):
    rec = _get(state, id)
    b = Body(req.body)
    name = b.str("name")
    labels = b.labels()
    b.done()
    if name is not None:
        if state.name_taken(state.ssh_keys, name, exclude=id):
            raise uniqueness("name", "SSH key with the same name already exists")
        rec["name"] = name
    if labels is not None:
        rec["labels"] = labels
    return 200, {"ssh_key": public(rec)}


@route("DELETE", "/ssh_keys/{id:int}")
def delete_ssh_key(state: State, req: Request, id: int):
    _get(state, id)
    del state.ssh_keys[id]
    return 204, None
