"""`aini up` with a non-22 SSH port on a fresh sandbox host: sshd really moves there.

The host is reached at its own address on the world network (sandbox.WORLD_NETWORK), not
through a port Docker publishes: a published port is forwarded to 22 inside, and AINI
rightly leaves sshd alone behind a forward, so only a direct address shows whether sshd
itself listens on the configured port. A fresh host listens on 22 only; after the run
sshd listens on 2222 only and the firewall drops 22, seen from inside (`ss`), from this
machine and from a second host (nmap). A second run changes nothing, and changing the
port in aini.yml moves sshd again while the firewall of the first run is up.
"""
from __future__ import annotations

import re
import socket
import subprocess

import pytest

from hosttools import ADMIN, assert_no_secret, image_or_fail, module_hosts, result_of, run_up, secrets_of, write_project
from tests.harness import sandbox

pytestmark = pytest.mark.sandbox
PORT = 2222
NEXT_PORT = 2200


def _target(server: sandbox.SandboxHost, port: int) -> str:
    return f"  kind: ssh\n  host: {server.ip}\n  port: {port}\n  user: root\n  ssh_key: {server.key}\n"


def listening(server: sandbox.SandboxHost) -> dict[int, str]:
    """{port: process} of every TCP socket listening on the host, as `ss` inside sees it."""
    out = server.exec("ss", "-Htlnp").stdout
    found: dict[int, str] = {}
    for line in out.splitlines():
        port = re.search(r":(\d+)\s", line.split(None, 4)[3] + " ")
        users = re.search(r'users:\(\("([^"]+)"', line)
        if port:
            found[int(port.group(1))] = users.group(1) if users else "?"
    return found


def sshd_ports(server: sandbox.SandboxHost) -> set[int]:
    return {port for port, proc in listening(server).items() if proc == "sshd"}


def connect(host: str, port: int) -> str:
    """'open', 'refused' or 'timeout' for a TCP connect from this machine."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "timeout"


def ssh_admin(server: sandbox.SandboxHost, port: int) -> subprocess.CompletedProcess:
    argv = ["ssh", *sandbox.SSH_OPTS, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-i", str(server.key),
            "-p", str(port), f"{ADMIN}@{server.ip}", "sudo -n true"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def nmap(outside: sandbox.SandboxHost, server: sandbox.SandboxHost, ports: str) -> dict[int, str]:
    scan = outside.exec("nmap", "-Pn", "-n", "-sS", "-p", ports, "--max-retries", "1", "-oG", "-",
                        server.ip, timeout=120).stdout
    return {int(p): state for p, state in re.findall(r"(\d+)/(open|closed|filtered)/tcp", scan)}


@pytest.fixture(scope="module")
def world(sandbox_image, sandbox_key, tmp_path_factory):
    scanner = image_or_fail(sandbox.scanner_image)
    with module_hosts(1, sandbox_key, sandbox_image) as (server,), \
            module_hosts(1, sandbox_key, scanner) as (outside,):
        assert server.ip, "the sandbox host has no address on the world network"
        # Without this, a host that already listened on 2222 would make every check below vacuous.
        fresh = sshd_ports(server)
        assert fresh == {22}, f"a fresh host should listen on 22 only, not {fresh}"
        assert connect(server.ip, PORT) == "refused"
        project = write_project(tmp_path_factory.mktemp("ssh-port"), target=_target(server, PORT))
        first = run_up(project)
        yield {"server": server, "outside": outside, "project": project, "first": first, "runs": [first],
               "secrets": secrets_of(project, server.key)}


@pytest.fixture(scope="module")
def moved(world):
    result = result_of(world["first"])
    assert result["connected_as"] == "root" and result["changed"] > 0, result
    assert result["port"] == PORT and result["host"] == world["server"].ip
    return world


def test_sshd_listens_on_the_configured_port_only(moved):
    server = moved["server"]
    assert sshd_ports(server) == {PORT}
    effective = server.exec("sshd", "-T").stdout.splitlines()
    assert [line for line in effective if line.startswith("port ")] == [f"port {PORT}"]


def test_the_admin_logs_in_on_the_new_port_and_22_is_closed(moved):
    server = moved["server"]
    r = ssh_admin(server, PORT)
    assert r.returncode == 0, r.stderr
    # Nothing listens on 22 and the firewall drops it: a connect gets no answer at all.
    assert connect(server.ip, 22) == "timeout"


def test_a_second_host_sees_the_new_port_open_and_22_not(moved):
    ports = nmap(moved["outside"], moved["server"], f"22,{PORT}")
    assert ports.get(PORT) == "open", ports
    assert ports.get(22) == "filtered", ports


def test_the_firewall_and_fail2ban_follow_the_port(moved):
    server = moved["server"]
    rules = server.exec("nft", "list", "set", "inet", "aini", "inbound_tcp").stdout
    elements = {int(p) for p in re.findall(r"\d+", rules.split("elements", 1)[1])}
    assert elements == {PORT, 80, 443}, rules
    jail = server.exec("fail2ban-client", "get", "sshd", "actions").stdout
    assert jail.strip(), "fail2ban's sshd jail has no action"
    assert f"port = {PORT}\n" in server.exec("cat", "/etc/fail2ban/jail.d/aini.local").stdout


def test_second_run_changes_nothing(moved):
    second = run_up(moved["project"])
    moved["runs"].append(second)
    result = result_of(second)
    assert result["connected_as"] == ADMIN and result["port"] == PORT
    (stats,) = result["stats"].values()
    assert stats["changed"] == 0 and result["changed"] == 0, result
    assert stats["failed"] == 0 and stats["unreachable"] == 0
    assert sshd_ports(moved["server"]) == {PORT}


def test_a_changed_port_moves_sshd_behind_the_running_firewall(moved):
    """Port 2222 -> 2200 in aini.yml: the run finds sshd on the port the last run recorded,
    lets 2200 through the firewall that is up, and closes 2222 only after it got in on 2200."""
    server, project = moved["server"], moved["project"]
    write_project(project, target=_target(server, NEXT_PORT))
    third = run_up(project)
    moved["runs"].append(third)
    result = result_of(third)
    assert result["connected_as"] == ADMIN and result["changed"] > 0, result
    assert sshd_ports(server) == {NEXT_PORT}
    assert ssh_admin(server, NEXT_PORT).returncode == 0
    ports = nmap(moved["outside"], server, f"22,{PORT},{NEXT_PORT}")
    assert ports == {22: "filtered", PORT: "filtered", NEXT_PORT: "open"}, ports
    again = result_of(run_up(project))
    assert again["changed"] == 0, again


def test_output_never_contains_a_secret(moved):
    assert moved["secrets"], "the test needs secrets to look for"
    for r in moved["runs"]:
        assert_no_secret(r.stdout + r.stderr, moved["secrets"])
