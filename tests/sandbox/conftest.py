"""Fixtures for tests on real Debian 12 sandbox hosts (see tests/harness/sandbox.py).

A world that cannot be built is a failure, never a skip: a skipped sandbox suite would
look green while proving nothing.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # makes `tests.harness` importable

from tests.harness import sandbox  # noqa: E402
from tests.harness.docker_engine import ensure_engine  # noqa: E402
from tests.harness.world import build_or_fail  # noqa: E402


def _world(what: str, build):
    return build_or_fail("sandbox", what, build)


@pytest.fixture(scope="session")
def sandbox_engine() -> str:
    """The docker client path, with dockerd running and leftovers of killed runs removed."""
    cli = _world("docker engine", ensure_engine)
    _world("cleanup of leftover sandbox containers", sandbox.cleanup_leftovers)
    return cli


@pytest.fixture(scope="session")
def sandbox_image(sandbox_engine) -> str:
    """Tag of the Debian 12 host image (built on first use, then cached by content hash)."""
    return _world("host image build", sandbox.host_image)


@pytest.fixture(scope="session")
def sandbox_key(tmp_path_factory) -> Path:
    """Private key (0600) of this session's ed25519 pair; its .pub is root's authorized key."""
    return sandbox.make_keypair(tmp_path_factory.mktemp("sandbox-ssh"))


@pytest.fixture
def sandbox_hosts(sandbox_image, sandbox_key):
    """Factory: `sandbox_hosts(n=1, image=None)` -> n fresh booted hosts, removed after the test."""
    made: list[sandbox.SandboxHost] = []

    def make(n: int = 1, image: str | None = None) -> list[sandbox.SandboxHost]:
        hosts = _world(f"starting {n} host(s)",
                       lambda: sandbox.start_hosts(n, sandbox_key, image=image or sandbox_image))
        made.extend(hosts)
        return hosts

    yield make
    for host in made:
        host.remove()


@pytest.fixture
def sandbox_host(sandbox_hosts) -> sandbox.SandboxHost:
    """One fresh Debian 12 host, reachable over SSH as root with `sandbox_key`."""
    return sandbox_hosts(1)[0]


@pytest.fixture
def sandbox_inventory(tmp_path):
    """Writer: `sandbox_inventory(hosts)` -> path of an Ansible inventory for those hosts."""
    return lambda hosts, group="sandbox": sandbox.write_inventory(
        list(hosts), tmp_path / "inventory.yml", group)
