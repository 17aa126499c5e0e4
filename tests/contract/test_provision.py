"""Provisioning through the real `hetzner.hcloud` modules against the simulator: a full run,
a no-op re-run, seeded fault schedules with a clean re-run after each, and name clashes.

The new server's SSH is a banner-only double on 127.0.0.1 (the playbook waits for an
OpenSSH banner); tests/sandbox backs the server with a real host instead.
"""

from __future__ import annotations

import random
import socket
import threading

import pytest

from aini.infra import hetzner as cloud
from aini.infra import provision
from aini.config import validate_data
from aini.errors import AiniError, InputError

from .conftest import TOKEN
from .helpers import ssh_public_key

MUTATING = {"POST", "PUT", "DELETE"}


@pytest.fixture(scope="module")
def ssh_banner_double():
    """A TCP server that greets like sshd and hangs up: all `wait_for` needs."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


@pytest.fixture
def project(tmp_path, sim, monkeypatch, ssh_banner_double):
    """A project dir with a public key, the simulator as the API, servers reachable at 127.0.0.1."""
    sim.state.hooks.on_server_create = lambda server: server["public_net"]["ipv4"].update(ip="127.0.0.1")
    (tmp_path / "id_ed25519.pub").write_text(ssh_public_key("operator") + "\n")
    monkeypatch.setenv("HCLOUD_TOKEN", TOKEN)
    monkeypatch.setenv("HCLOUD_ENDPOINT", sim.url)
    return tmp_path


def config(port: int, **target):
    target = {"kind": "hetzner", "ssh_keys": ["id_ed25519.pub"], "ssh_port": port, **target}
    return validate_data({"domain": "example.com", "email": "a@example.com", "target": target}, "aini.yml")


def counts(sim) -> dict[str, int]:
    state = sim.state
    return {kind: len(getattr(state, kind)) for kind in ("servers", "firewalls", "ssh_keys")}


def test_full_provisioning_then_a_noop_rerun(sim, project, ssh_banner_double):
    cfg = config(ssh_banner_double)
    first = provision.provision(cfg, project, "aini")
    created = len(sim.requests)
    assert first.ipv4 == "127.0.0.1" and first.changed >= 3
    assert created < 60, f"{created} requests for a full provisioning"
    assert counts(sim) == {"servers": 1, "firewalls": 1, "ssh_keys": 1}
    owned = cloud.read_owned(cloud.connect(), cfg)
    assert sorted(o.kind for o in owned) == ["firewall", "server", "ssh_key"]
    server = next(iter(sim.state.servers.values()))
    assert server["labels"] == {cloud.LABEL: "aini"}
    assert "ssh_pwauth: false" in server["_user_data"] and "disable_root: true" in server["_user_data"]

    before = len(sim.requests)
    again = provision.provision(cfg, project, "aini")
    rerun = sim.requests[before:]
    assert again.changed == 0
    assert [r for r in rerun if r[0] in MUTATING] == [], "a re-run must create or change nothing"
    print(f"requests: full {created}, no-op {len(rerun)}")


def test_firewall_allows_only_ssh_http_https(sim, project, ssh_banner_double):
    provision.provision(config(ssh_banner_double, ssh_from=["203.0.113.0/24"]), project, "aini")
    firewall = next(iter(sim.state.firewalls.values()))
    rules = {(r["protocol"], r.get("port")): r["source_ips"] for r in firewall["rules"] if r["direction"] == "in"}
    assert rules == {
        ("tcp", str(ssh_banner_double)): ["203.0.113.0/24"],
        ("tcp", "80"): ["0.0.0.0/0", "::/0"],
        ("tcp", "443"): ["0.0.0.0/0", "::/0"],
        ("icmp", None): ["0.0.0.0/0", "::/0"],
    }


def test_dns_records_for_every_enabled_subdomain(sim, project, ssh_banner_double):
    client = cloud.connect()
    client.zones.create(name="example.com", mode="primary")
    provision.provision(config(ssh_banner_double, dns_zone="example.com"), project, "aini")
    rrsets = {(r.name, r.type) for r in client.zones.get_rrset_all(client.zones.get("example.com"))}
    for sub in ("chat", "n8n", "cloud", "office", "traefik", "netdata", "consul", "vault"):
        assert (sub, "A") in rrsets and (sub, "AAAA") in rrsets, sub


def test_a_foreign_resource_with_aini_s_name_is_not_adopted(sim, project, ssh_banner_double):
    client = cloud.connect()
    client.ssh_keys.create("aini-admin", ssh_public_key("someone else"))
    with pytest.raises(InputError, match="ssh key named 'aini-admin' exists .* not created by AINI"):
        provision.provision(config(ssh_banner_double), project, "aini")
    assert counts(sim)["servers"] == 0


def _random_schedule(faults, rng: random.Random) -> list[str]:
    chosen = []
    menu = [
        ("random 429/5xx/drops", lambda: faults.random_errors(rng.uniform(0.05, 0.25), (429, 502, 503, 504, "drop"))),
        ("429 burst", lambda: faults.rate_limit(count=rng.randint(1, 4), after=rng.randint(0, 20))),
        ("lost answer to a create", lambda: faults.drop(match="POST", processed=True, after=rng.randint(0, 3))),
        ("slow actions", lambda: faults.slow_actions(rng.uniform(0.5, 2.0), count=2)),
        ("failing action", lambda: faults.fail_actions(after=rng.randint(0, 2))),
        ("503 on a create", lambda: faults.server_error(503, match="POST", after=rng.randint(0, 3))),
    ]
    for name, add in rng.sample(menu, rng.randint(1, 3)):
        add()
        chosen.append(name)
    return chosen


@pytest.mark.parametrize("seed", range(50))
def test_fault_schedule_then_rerun_converges_without_orphans(seed, sim, project, ssh_banner_double):
    rng = random.Random(seed)
    faults = sim.state.faults
    chosen = _random_schedule(faults, rng)
    cfg = config(ssh_banner_double)
    try:
        provision.provision(cfg, project, "aini")
    except AiniError as exc:
        message = str(exc)
        assert "\n" not in message and "Traceback" not in message and TOKEN not in message, message
        assert len(message) < 600, message
    faults.clear()
    result = provision.provision(cfg, project, "aini")
    assert result.ipv4 == "127.0.0.1", chosen
    assert counts(sim) == {"servers": 1, "firewalls": 1, "ssh_keys": 1}, (chosen, counts(sim))
