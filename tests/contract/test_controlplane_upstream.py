"""The control-plane flows of test_controlplane_flows.py against the real upstream images,
pinned as in the catalog: hashicorp/vault, openbao/openbao and hashicorp/consul.

These check the API slice AINI calls, on minimal containers (file storage, host network).
Whether the images start with AINI's rendered configuration (raft in a named volume, Consul
on several networks) is tests/e2e/test_upstream_stack.py's job: it deploys the bundle
verbatim.

They need Docker Hub and a Docker engine. Where Docker Hub is not reachable (as on the
machines that build AINI) every test here is skipped and says so; a skip is not a pass,
and CI must not count it as one. The reachability probe is a TCP connect to the registry
with a 4 s bound, in a thread so that a hanging DNS lookup cannot stretch it; it needs no
Docker.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from aini.catalog.core import CONSUL, OPENBAO, VAULT
from aini.catalog.model import ServiceSpec

from tests.harness.upstream import REGISTRY, registry_unreachable

from .test_controlplane_flows import consul_flow, health_endpoints, vault_flow

pytestmark = pytest.mark.upstream

@pytest.fixture(scope="module")
def docker() -> str:
    reason = registry_unreachable()
    if reason:
        pytest.skip(f"Docker Hub ({REGISTRY[0]}:{REGISTRY[1]}) is not reachable from this machine ({reason}); "
                    "the upstream Vault/OpenBao/Consul flows did not run")
    binary = shutil.which("docker")
    if binary is None or subprocess.run([binary, "info"], capture_output=True, timeout=20, check=False).returncode != 0:
        pytest.skip("Docker Hub is reachable but no Docker engine answers here; the upstream flows did not run")
    return binary


def run(docker: str, *args: str, timeout: float = 600) -> str:
    result = subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"docker {args[0]} failed: {result.stderr[-1000:]}")
    return result.stdout.strip()


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> bytes | None:
    """The body of a GET, or None while nothing answers."""
    try:
        with _OPENER.open(url, timeout=2) as answer:
            return answer.read()
    except urllib.error.HTTPError as exc:
        return exc.read()  # answering, whatever the status
    except OSError:
        return None


def wait_until(what: str, predicate, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {seconds:g} s")
        time.sleep(0.5)


@contextlib.contextmanager
def _vault_container(docker: str, spec: ServiceSpec) -> Iterator[str]:
    prefix = "BAO" if spec.name == "openbao" else "VAULT"
    storage = "/openbao/file" if spec.name == "openbao" else "/vault/file"
    config = {"storage": {"file": {"path": storage}}, "disable_mlock": True, "ui": False,
              "listener": [{"tcp": {"address": "0.0.0.0:8200", "tls_disable": True}}]}
    container = run(docker, "run", "-d", "--rm", "-p", "127.0.0.1::8200", "-e", "SKIP_SETCAP=true",
                    "-e", f"{prefix}_LOCAL_CONFIG={json.dumps(config)}", spec.pinned, "server")
    try:
        address = "http://" + run(docker, "port", container, "8200/tcp").splitlines()[0]
        wait_until(f"{spec.name} answering", lambda: get(address + "/v1/sys/health") is not None)
        yield address
    finally:
        subprocess.run([docker, "rm", "-f", container], capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("spec", [VAULT, OPENBAO], ids=lambda s: s.name)
def test_vault_flow_against_the_real_image(docker: str, spec: ServiceSpec):
    with _vault_container(docker, spec) as address:
        vault_flow(address)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_consul_flow_against_the_real_image(docker: str):
    http, server, serf = _free_port(), _free_port(), _free_port()
    # Host networking, so the checks reach this test's targets on 127.0.0.1.
    container = run(docker, "run", "-d", "--rm", "--network", "host", CONSUL.pinned, "agent", "-server",
                    "-bootstrap-expect=1", "-bind=127.0.0.1", "-client=127.0.0.1", "-data-dir=/consul/data",
                    "-hcl", 'datacenter = "aini"',
                    "-hcl", 'acl {\n enabled = true\n default_policy = "deny"\n}',
                    "-hcl", f"ports {{\n http = {http}\n server = {server}\n serf_lan = {serf}\n"
                            " serf_wan = -1\n dns = -1\n grpc = -1\n}")
    targets = health_endpoints()
    try:
        address = f"http://127.0.0.1:{http}"
        # a single server elects itself a few seconds after it starts; /status needs no token
        wait_until("a Consul leader", lambda: (get(address + "/v1/status/leader") or b'""').strip() not in (b'""', b""))
        consul_flow(address, targets)
    finally:
        for target in targets.values():
            try:
                target.stop()
            except OSError:
                pass
        subprocess.run([docker, "rm", "-f", container], capture_output=True, timeout=60, check=False)
