"""Small helpers shared by the contract tests."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
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


# ------------------------------------------------------------ test doubles and docker

DOUBLES = Path(__file__).resolve().parents[1] / "harness" / "images" / "doubles"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_double_process(service: str, data_dir: Path, port: int, mode: str = "normal",
                         env: dict[str, str] | None = None, argv: tuple[str, ...] = ("server",)) -> subprocess.Popen:
    """double.py as the doubles image runs it, on a local port, until that port accepts a
    connection. `env` replaces the inherited environment (a test that must not leak the
    caller's variables into the double passes its own)."""
    full = {**(os.environ if env is None else env), "AINI_DOUBLE": service, "AINI_DOUBLE_MODE": mode,
            "AINI_DOUBLE_HOST": "127.0.0.1", "AINI_DOUBLE_PORT": str(port), "AINI_DOUBLE_DATA": str(data_dir),
            "PYTHONDONTWRITEBYTECODE": "1"}
    process = subprocess.Popen([sys.executable, str(DOUBLES / "double.py"), *argv], env=full,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read().decode() if process.stdout else "double exited")
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"{service} double did not listen within 15 s")


def stop_double_process(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=10)
    return out.decode()


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """The engine's own client (sandbox.docker_cli), text output; a failure is an assertion."""
    from tests.harness.sandbox import docker_cli

    r = subprocess.run([docker_cli(), *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed: {r.stderr[-2000:]}")
    return r
