"""The e2e world on a server: a fresh sandbox host (Debian 12, systemd, its own dockerd),
configured and deployed by the real `aini up` CLI over SSH, Traefik's certificates from a
real ACME CA (Pebble) over HTTP-01.

Images: the host cannot reach a registry, so the stack images built for the e2e suite are
copied into its Docker engine first (`docker save | docker load`), as an operator of an
air-gapped server would, and aini.yml points at them through `images.overrides`.
Pebble listens on the outer Docker bridge's gateway, which the host's containers reach;
its DNS stub answers every name with the host's bridge address, where Pebble's validator
finds Traefik on port 80.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.e2e.stack import Stack
from tests.harness import sandbox

AINI = [sys.executable, "-m", "aini"]
DOMAIN = "aini.test"
UP_TIMEOUT = 1800


def bridge_gateway() -> str:
    out = sandbox.docker("network", "inspect", "bridge", "--format",
                         "{{range .IPAM.Config}}{{.Gateway}}{{end}}").stdout.decode().strip()
    if not out:
        raise RuntimeError("the Docker bridge has no gateway address")
    return out


def load_images(host: sandbox.SandboxHost, images: list[str], timeout: float = 900) -> float:
    """Copy images into the host's engine in one stream (shared layers travel once)."""
    start = time.monotonic()
    deadline = start + 120
    while host.exec("docker", "info", check=False, timeout=30).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host.name}: its dockerd did not start")
        time.sleep(1)
    save = subprocess.Popen([sandbox.docker_cli(), "save", *images], stdout=subprocess.PIPE)
    load = subprocess.run([sandbox.docker_cli(), "exec", "-i", host.name, "docker", "load", "--quiet"],
                          stdin=save.stdout, capture_output=True, timeout=timeout)
    save.stdout.close()
    if save.wait(timeout=60) != 0 or load.returncode != 0:
        raise RuntimeError(f"docker save | docker load into {host.name} failed: {load.stderr.decode()[-500:]}")
    return time.monotonic() - start


@dataclass
class ServerStack(Stack):
    """The same checks as the local stack's, against a sandbox host's published 80/443."""

    server: sandbox.SandboxHost | None = None
    ca_pem: Path | None = None  # Pebble's root: the client trusts only it
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        pass  # no local-target ports: Traefik listens on the server's 80/443

    @property
    def ca(self) -> Path:
        assert self.ca_pem is not None
        return self.ca_pem

    def write_config(self, data: dict | None = None) -> None:
        (self.project_dir / "aini.yml").write_text(yaml.safe_dump(data or self.data, sort_keys=False))

    def aini(self, *args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
        r = subprocess.run([*AINI, *args], cwd=self.project_dir, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        self.log.append(r.stdout + r.stderr)
        return r

    def up_cli(self, *extra: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
        return self.aini("up", "--docker-source", "debian", "--json", *extra, timeout=timeout)

    def docker_run(self, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        assert self.server is not None
        if env:
            raise AssertionError("pass secrets to the server's docker through the host, not here")
        return self.server.exec("docker", *args, check=False, timeout=timeout)

    def health(self) -> dict[str, str]:
        """Container -> health (or state when it has no health check), on the server."""
        out = self.docker_cmd("ps", "-a", "--filter", "label=aini.project", "--format", "{{.Names}}")
        names = out.split()
        if not names:
            return {}
        rows = json.loads(self.docker_cmd("inspect", *names))
        return {r["Name"].lstrip("/"): (r["State"].get("Health") or {}).get("Status") or r["State"]["Status"]
                for r in rows}

    def teardown(self) -> None:
        pass  # the sandbox host is removed whole
