"""The e2e world on a server: a fresh sandbox host (Debian 12, systemd, its own dockerd),
configured and deployed by the real `aini up` CLI over SSH, Traefik's certificates from a
real ACME CA (Pebble) over HTTP-01.

Images: the host cannot reach a registry, so the stack images built for the e2e suite are
copied into its Docker engine first (`docker save | docker load`), as an operator of an
air-gapped server would, and aini.yml points at them through `images.overrides`.
Pebble listens on the sandbox hosts' network's gateway (sandbox.WORLD_NETWORK), which the host's containers reach;
its DNS stub answers every name with the host's bridge address, where Pebble's validator
finds Traefik on port 80.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.e2e.stack import PASSPHRASE_ENV, Stack, stack_config
from tests.harness import acme, sandbox

AINI = [sys.executable, "-m", "aini"]
DOMAIN = "aini.test"
UP_TIMEOUT = 1800


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
    up_result: dict = field(default_factory=dict)
    pebble: acme.PebbleWorld | None = None

    def __post_init__(self) -> None:
        pass  # no local-target ports: Traefik listens on the server's 80/443

    @property
    def ca(self) -> Path:
        assert self.ca_pem is not None
        return self.ca_pem

    def write_config(self, data: dict | None = None) -> None:
        (self.project_dir / "aini.yml").write_text(yaml.safe_dump(data or self.data, sort_keys=False))

    def aini(self, *args: str, timeout: float = UP_TIMEOUT, env: dict | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([*AINI, *args], cwd=self.project_dir, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL,
                           env={**os.environ, **PASSPHRASE_ENV, **(env or {})})
        self.log.append(r.stdout + r.stderr)
        return r

    def up_cli(self, *extra: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
        return self.aini("up", "--docker-source", "debian", "--json", *extra, timeout=timeout)

    def docker_run(self, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        assert self.server is not None
        if env:
            raise AssertionError("pass secrets to the server's docker through the host, not here")
        return self.server.exec("docker", *args, check=False, timeout=timeout)

    def containers(self) -> dict[str, tuple[str, str]]:
        out = self.docker_cmd("ps", "-a", "--filter", f"label=aini.project={self.config.project}",
                              "--format", "{{.Names}}\t{{.ID}}\t{{.State}}")
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        return {name: (cid, state) for name, cid, state in rows}

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


class WorldError(RuntimeError):
    pass


@contextlib.contextmanager
def server_world(workdir: Path, images: dict[str, str], wait_timeout: int = 300,
                 figures: dict | None = None) -> Iterator[ServerStack]:
    """A fresh server with the images loaded, Pebble, and a project whose `aini up` has
    succeeded (onlyoffice disabled: a disabled service must have no route). Everything is
    removed on exit. Raises WorldError with the output of whatever failed."""
    figures = figures if figures is not None else {}
    key = sandbox.make_keypair(workdir / "ssh")
    hosts = sandbox.start_hosts(1, key, image=sandbox.docker_host_image(), prefix="aini-server")
    host = hosts[0]
    pebble = None
    try:
        figures["server_images_load_seconds"] = round(load_images(host, sorted(set(images.values()))), 1)
        gateway = sandbox.world_network()
        pebble = acme.PebbleWorld(workdir / "pebble", http_port=80, listen="0.0.0.0", extra_ips=[gateway],
                                  default_ipv4=host.ip).start()
        root = workdir / "pebble-root.pem"
        root.write_text(pebble.roots_pem())
        # The variants the local e2e does not deploy: n8n on PostgreSQL, the OpenBao flavour.
        data = stack_config(images, onlyoffice={"enabled": False}, n8n={"database": "postgres"},
                            vault={"flavor": "openbao"})
        data.pop("project")
        data.update(domain=DOMAIN, email="admin@aini.test",
                    target={"kind": "ssh", "host": "127.0.0.1", "port": host.ssh_port, "user": "root",
                            "ssh_key": str(key)},
                    tls={"challenge": "http", "acme_server": pebble.directory_url(gateway),
                         "acme_ca": str(pebble.listener_ca_pem)})
        project = workdir / "project"
        project.mkdir()
        s = ServerStack(project, data, host.http_port, host.https_port, sandbox.docker_cli(), server=host,
                        ca_pem=root, pebble=pebble)
        s.write_config()
        start = time.monotonic()
        r = s.up_cli("--wait-timeout", str(wait_timeout))
        s.deploy_seconds = time.monotonic() - start
        if r.returncode != 0:
            raise WorldError(f"aini up failed ({r.returncode}):\n{r.stderr[-6000:]}\n{pebble.log_tails()}")
        s.up_result = json.loads(r.stdout)
        figures["server_up_seconds"] = round(s.deploy_seconds, 1)
        figures["server_deploy_seconds"] = s.up_result["deployed"]["seconds"]
        figures["server_deploy_groups"] = {g: v["seconds"] for g, v in s.up_result["deployed"]["groups"].items()}
        yield s
    finally:
        if pebble:
            pebble.stop()
        for h in hosts:
            h.remove()
