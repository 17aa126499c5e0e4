"""`aini up` on a fresh sandbox host through the real CLI, then the host checked from inside
(testinfra, as the admin user) and from outside (nmap from a second machine on the bridge).

One converge is shared by the module: it is the expensive part (~1-2 min), and every
test here only reads the host, except the last one, which runs `aini up` again.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from hosttools import (ADMIN, admin_testinfra, assert_no_secret, image_or_fail, module_hosts,
                       result_of, run_up, secrets_of, ssh_as, write_project)
from tests.harness import sandbox

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def world(sandbox_image, sandbox_key, tmp_path_factory):
    scanner = image_or_fail(sandbox.scanner_image)
    with module_hosts(1, sandbox_key, sandbox_image) as (server,), \
            module_hosts(1, sandbox_key, scanner) as (outside,):
        project = write_project(tmp_path_factory.mktemp("up"), server)
        first = run_up(project)
        yield {"server": server, "outside": outside, "project": project, "first": first,
               "secrets": secrets_of(project, server.key)}


@pytest.fixture(scope="module")
def converged(world):
    result = result_of(world["first"])
    assert result["connected_as"] == "root" and result["changed"] > 0, result
    return world


@pytest.fixture(scope="module")
def infra(converged):
    return admin_testinfra(converged["server"])


def test_first_run_reports_host_admin_and_stats(converged):
    result = json.loads(converged["first"].stdout)
    assert result["host"] == "127.0.0.1" and result["port"] == converged["server"].ssh_port
    assert result["admin_user"] == ADMIN
    (stats,) = result["stats"].values()
    assert stats["failed"] == 0 and stats["unreachable"] == 0 and stats["changed"] == result["changed"]


def test_admin_user_with_key_and_sudo(infra, converged):
    user = infra.user(ADMIN)
    assert user.exists and user.shell == "/bin/bash" and "docker" in user.groups
    assert infra.run("sudo -n -u %s sudo -n true", ADMIN).rc == 0  # NOPASSWD sudo, as the admin user
    keys = infra.file(f"/home/{ADMIN}/.ssh/authorized_keys")
    pub = converged["server"].key.with_suffix(".pub").read_text().split()[1]
    assert keys.mode == 0o600 and keys.user == ADMIN
    assert keys.content_string.count(pub) == 1
    assert infra.file("/etc/sudoers.d/90-aini-admin").mode == 0o440


def test_sshd_refuses_passwords_and_root(infra, converged):
    effective = infra.check_output("sshd -T").splitlines()
    for line in ("permitrootlogin no", "passwordauthentication no", "kbdinteractiveauthentication no",
                 f"allowusers {ADMIN}"):
        assert line in effective
    server = converged["server"]
    root = ssh_as(server, "root")
    assert root.returncode == 255 and "Permission denied" in root.stderr
    # With keys switched off, the server offers no other method: no password prompt at all.
    password = ssh_as(server, ADMIN, "-o", "PubkeyAuthentication=no",
                      "-o", "PreferredAuthentications=password,keyboard-interactive")
    assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr


def test_fail2ban_guards_sshd(infra):
    assert infra.service("fail2ban").is_running and infra.service("fail2ban").is_enabled
    assert "Currently banned" in infra.check_output("fail2ban-client status sshd")


def test_docker_and_compose(infra):
    assert infra.service("docker").is_running and infra.service("docker").is_enabled
    assert re.search(r"Docker Compose version v2\.", infra.check_output("docker compose version"))


def test_log_rotation_and_live_restore(infra):
    daemon = json.loads(infra.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-driver"] == "json-file" and daemon["live-restore"] is True
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert infra.check_output("docker info --format '{{.LoggingDriver}} {{.LiveRestoreEnabled}}'") == "json-file true"
    assert "SystemMaxUse=500M" in infra.file("/etc/systemd/journald.conf.d/50-aini.conf").content_string


def test_swap_updates_and_time(infra):
    swap = infra.file("/swapfile")
    assert swap.mode == 0o600 and swap.size >= 2048 * 1024 * 1024
    assert infra.check_output("blkid -p -o value -s TYPE /swapfile") == "swap"
    assert infra.check_output("grep -c '^/swapfile ' /etc/fstab") == "1"
    origins = infra.check_output("apt-config dump | grep 'Origins-Pattern:: '").splitlines()
    assert origins and all("Debian-Security" in o for o in origins)
    assert infra.service("systemd-timesyncd").is_enabled


def _busybox_image(converged) -> None:
    """A tiny image with busybox httpd imported into the server's own Docker (no registry here)."""
    outside, server = converged["outside"], converged["server"]
    outside.exec("sh", "-c", "mkdir -p /tmp/bb/bin && cp /bin/busybox /tmp/bb/bin/")
    tar = subprocess.run([sandbox.docker_cli(), "exec", outside.name, "tar", "-C", "/tmp/bb", "-c", "."],
                         capture_output=True, check=True, timeout=60).stdout
    subprocess.run([sandbox.docker_cli(), "exec", "-i", server.name, "docker", "import", "-c",
                    'CMD ["/bin/busybox", "httpd", "-f", "-p", "80"]', "-", "aini-test/busybox:1"],
                   input=tar, capture_output=True, check=True, timeout=120)


def test_firewall_holds_against_published_ports(converged):
    """Only 22/80/443 reach the host from outside, even for ports Docker publishes."""
    server, outside = converged["server"], converged["outside"]
    _busybox_image(converged)
    for name, port in (("web80", 80), ("web8080", 8080)):
        server.exec("docker", "run", "-d", "--name", name, "-p", f"{port}:80", "aini-test/busybox:1")
    # A host process listening on a port nobody allowed.
    server.exec("sh", "-c", "nohup python3 -m http.server 9000 >/dev/null 2>&1 &")
    server.exec("sh", "-c", "for i in $(seq 50); do python3 -c \"import socket; socket.create_connection(('127.0.0.1', 9000), 1)\" "
                "2>/dev/null && exit 0; sleep 0.1; done; exit 1")
    # Both containers answer on the server itself: whatever is filtered below, the firewall filtered.
    for port in (80, 8080):
        server.exec("python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 5)")
    # From a container, the host's own listener is as unreachable as from outside; a published
    # port is reached (so the probe itself works).
    probe = ("gw=$(/bin/busybox ip route | /bin/busybox awk '/default/ {print $3}'); "
             "echo | /bin/busybox nc -w 3 $gw {port}")
    reached = {port: server.exec("docker", "run", "--rm", "aini-test/busybox:1", "/bin/busybox", "sh", "-c",
                                 probe.replace("{port}", str(port)), check=False, timeout=60).returncode == 0
               for port in (80, 9000)}
    assert reached == {80: True, 9000: False}, reached

    scan = outside.exec("nmap", "-Pn", "-n", "-sS", "-p-", "--min-rate", "8000", "--max-retries", "1",
                        "-oG", "-", server.ip, timeout=300).stdout
    ports = dict(re.findall(r"(\d+)/(open|closed|filtered)/tcp", scan))
    reachable = {int(p) for p, state in ports.items() if state in ("open", "closed")}
    assert reachable == {22, 80, 443}, scan  # closed = let through, nothing listening
    assert ports.get("22") == "open" and ports.get("80") == "open", scan
    assert re.search(r"Ignored State: filtered \(65532\)", scan), scan  # every other port dropped
    detail = outside.exec("nmap", "-Pn", "-n", "-sS", "-p", "8080,9000", server.ip).stdout
    assert re.search(r"8080/tcp\s+filtered", detail) and re.search(r"9000/tcp\s+filtered", detail), detail


def test_second_run_changes_nothing(converged):
    second = run_up(converged["project"])
    result = result_of(second)
    assert result["connected_as"] == ADMIN  # root is closed; the admin user is tried first
    (stats,) = result["stats"].values()
    assert stats["changed"] == 0 and result["changed"] == 0, result
    assert stats["failed"] == 0 and stats["unreachable"] == 0
    converged["second"] = second


def test_output_never_contains_a_secret(converged):
    assert converged["secrets"], "the test needs secrets to look for"
    for run in ("first", "second"):
        r = converged.get(run)
        if r is not None:
            assert_no_secret(r.stdout + r.stderr, converged["secrets"])
