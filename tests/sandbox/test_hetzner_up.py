"""`aini up` on the hetzner target: the real CLI provisions through the Hetzner API simulator
(real `hetzner.hcloud` modules), and the server it creates is backed by a sandbox host, so
host configuration then runs for real. A re-run changes nothing in the cloud; `aini
destroy` removes exactly the labelled resources."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from hosttools import AINI, UP_TIMEOUT, assert_no_secret, module_hosts, result_of, secrets_of, up_command
from tests.harness.hcloud_sim import Simulator

pytestmark = pytest.mark.sandbox
TOKEN = "sandbox-hcloud-token-0123456789"
MUTATING = {"POST", "PUT", "DELETE"}


@pytest.fixture(scope="module")
def world(sandbox_image, sandbox_key, tmp_path_factory):
    with module_hosts(1, sandbox_key, sandbox_image) as (server,):
        sim = Simulator(token=TOKEN, action_delay=0.05,
                        on_server_create=lambda s: s["public_net"]["ipv4"].update(ip="127.0.0.1"))
        url = sim.start()
        project = tmp_path_factory.mktemp("hetzner")
        (project / "aini.yml").write_text(
            "domain: example.com\nemail: admin@example.com\ntarget:\n  kind: hetzner\n  server_type: cx33\n"
            f"  ssh_keys: [{server.key.with_suffix('.pub')}]\n  ssh_port: {server.ssh_port}\n"
        )
        env = {**os.environ, "HCLOUD_TOKEN": TOKEN, "HCLOUD_ENDPOINT": url}

        def aini(*args, timeout=UP_TIMEOUT):
            argv = up_command() if args == ("up",) else [*AINI, *args]
            return subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)

        rendered = aini("render", timeout=120)  # secrets in .aini/, so the test can show none leaks
        assert rendered.returncode == 0, rendered.stderr
        try:
            yield {"sim": sim, "server": server, "project": project, "aini": aini}
        finally:
            sim.stop()


def test_up_provisions_then_configures_the_host(world):
    sim, aini = world["sim"], world["aini"]
    first = aini("up")
    result = result_of(first)
    assert result["host"] == "127.0.0.1" and result["port"] == world["server"].ssh_port
    assert result["connected_as"] == "root" and result["changed"] > 0
    state = sim.state
    assert (len(state.servers), len(state.firewalls), len(state.ssh_keys)) == (1, 1, 1)
    requests = len(sim.requests)
    print(f"API requests for a full up: {requests}")
    assert requests < 60
    assert_no_secret(first.stdout + first.stderr, [TOKEN, *secrets_of(world["project"], world["server"].key)])

    before = len(sim.requests)
    again = result_of(aini("up"))
    assert again["changed"] == 0 and again["connected_as"] == "aini"
    assert [r for r in sim.requests[before:] if r[0] in MUTATING] == []


def test_plan_shows_the_price_from_the_api(world):
    r = world["aini"]("plan", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["cloud"]
    assert plan["server_type"] == "cx33" and float(plan["monthly_gross"]) > 0
    assert {(c["action"], c["kind"]) for c in plan["changes"]} == {("keep", "server"), ("keep", "firewall"), ("keep", "ssh_key")}


def test_destroy_removes_exactly_the_labelled_resources(world):
    sim, aini = world["sim"], world["aini"]
    refused = aini("destroy", "--confirm", "not-the-project", timeout=120)
    assert refused.returncode == 2 and "nothing was removed" in refused.stderr
    assert len(sim.state.servers) == 1
    r = aini("destroy", "--confirm", "aini", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "removed server aini" in r.stdout and "Removed 3 resources." in r.stdout
    state = sim.state
    assert (len(state.servers), len(state.firewalls), len(state.ssh_keys)) == (0, 0, 0)
