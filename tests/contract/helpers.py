"""Small helpers shared by the contract tests."""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from typing import Any, Callable

import pytest
from hcloud import APIException
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType


def ssh_public_key(seed: int | str, comment: str = "test@aini") -> str:
    """A syntactically valid, deterministic ssh-ed25519 public key."""
    raw = hashlib.sha256(str(seed).encode()).digest()
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + raw
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def api_error(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> APIException:
    """Call ``fn`` and return the :class:`APIException` it must raise."""
    with pytest.raises(APIException) as info:
        fn(*args, **kwargs)
    return info.value


def create_server(client, name: str, *, server_type: str = "cx23", image: str = "debian-12",
                  location: str | None = "fsn1", wait: bool = True, **kwargs):
    resp = client.servers.create(
        name=name, server_type=ServerType(name=server_type), image=Image(name=image),
        location=Location(name=location) if location else None, **kwargs)
    if wait:
        resp.action.wait_until_finished()
        for action in resp.next_actions:
            action.wait_until_finished()
    return resp


def statuses(sim, method: str | None = None, path: str | None = None) -> list[int | None]:
    return [r.status for r in sim.requests
            if (method is None or r.method == method) and (path is None or r.path == path)]


def wait_for(predicate: Callable[[], bool], seconds: float = 8.0, step: float = 0.1) -> None:
    """Poll until `predicate()` holds; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds} s")
        time.sleep(step)
