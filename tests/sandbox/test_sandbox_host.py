"""A sandbox host must behave like a fresh Hetzner Debian 12 server reached over SSH."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sandbox

ANSIBLE = Path(sys.executable).parent / "ansible"


def ansible(inventory: Path, module: str, *args: str) -> dict:
    """Run an ad-hoc module on all hosts; return {host: result} from the JSON callback."""
    env = {**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json",
           "ANSIBLE_NOCOLOR": "1"}
    r = subprocess.run([str(ANSIBLE), "all", "-i", str(inventory), "-m", module, *args],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, f"ansible -m {module} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(r.stdout)["plays"][0]["tasks"][0]["hosts"]


def test_systemd_is_pid1_and_running(sandbox_host):
    assert sandbox_host.system_state() == "running", sandbox_host.failed_units()
    host = sandbox_host.testinfra()
    assert host.check_output("ps -o comm= -p 1") == "systemd"
    assert host.service("dbus").is_running


def test_sshd_up_with_root_login_by_key_only(sandbox_host):
    host = sandbox_host.testinfra()
    assert host.user().name == "root"
    assert host.service("ssh").is_running and host.service("ssh").is_enabled
    assert host.socket("tcp://0.0.0.0:22").is_listening
    effective = host.check_output("sshd -T")
    assert "permitrootlogin without-password" in effective
    assert "passwordauthentication no" in effective
    # A password can never get in, even when offered first.
    r = subprocess.run(
        [*sandbox_host.ssh_command()[:-1], "-o", "PubkeyAuthentication=no",
         "-o", "PreferredAuthentications=password,keyboard-interactive", "root@127.0.0.1", "true"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 255 and "Permission denied" in r.stderr


def test_ansible_reaches_root_by_key(sandbox_hosts, sandbox_inventory):
    hosts = sandbox_hosts(1)
    results = ansible(sandbox_inventory(hosts), "ping")
    assert results[hosts[0].name]["ping"] == "pong"


def test_ansible_sees_debian_12(sandbox_host, sandbox_inventory):
    facts = ansible(sandbox_inventory([sandbox_host]), "setup")[sandbox_host.name]["ansible_facts"]
    assert facts["ansible_distribution"] == "Debian"
    assert facts["ansible_distribution_major_version"] == "12"
    assert facts["ansible_service_mgr"] == "systemd"
    assert facts["ansible_user_id"] == "root"


def test_python3_present_docker_absent(sandbox_host):
    host = sandbox_host.testinfra()
    assert host.exists("python3") and host.exists("sudo")
    assert host.check_output("python3 -c 'import sys; print(sys.version_info[:2])'") == "(3, 11)"
    for tool in ("docker", "dockerd", "containerd"):
        assert not host.exists(tool), f"{tool} must be left for the product to install"
    assert not host.package("docker.io").is_installed
    assert host.check_output("ls -A /var/lib/docker") == ""


def test_restart_keeps_disk_and_brings_ssh_back(sandbox_host):
    before = sandbox_host.inventory()
    sandbox_host.ssh("echo kept > /root/marker && echo gone > /run/marker")
    sandbox_host.restart()
    assert sandbox_host.inventory() == before, "an inventory written before a reboot stays valid"
    assert sandbox_host.ssh("cat /root/marker").stdout.strip() == "kept"
    # /run is a tmpfs, emptied like on a real reboot.
    assert sandbox_host.ssh("test -e /run/marker", check=False).returncode == 1
    assert sandbox_host.system_state() == "running", sandbox_host.failed_units()


def test_hosts_reach_each_other_on_the_bridge(sandbox_hosts):
    a, b = sandbox_hosts(2)
    assert a.ip and b.ip and a.ip != b.ip
    assert len({a.ssh_port, a.http_port, a.https_port, b.ssh_port, b.http_port, b.https_port}) == 6
    # What a port scan from a second container relies on.
    a.exec("timeout", "5", "bash", "-c", f"</dev/tcp/{b.ip}/22")
