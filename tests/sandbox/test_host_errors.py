"""`aini up` failures a person can act on: one line naming the cause and what to do,
exit 1 (2 for input the user must change), no traceback, and the host left untouched."""
from __future__ import annotations

import socket

import pytest

from aini.errors import AiniError
from aini.infra.ansible import run_playbook
from hosttools import assert_one_line_error, module_hosts, run_up, write_project
from tests.harness import sandbox

UBUNTU_OS_RELEASE = """PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=jammy
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hosts(sandbox_image, sandbox_key):
    with module_hosts(2, sandbox_key, sandbox_image) as pair:
        yield pair


def _untouched(host: sandbox.SandboxHost) -> bool:
    return host.exec("id", "aini", check=False).returncode != 0 and host.ssh_ok()


def test_unreachable_host(tmp_path):
    key = sandbox.make_keypair(tmp_path / "ssh")
    project = write_project(tmp_path / "p", key=key, port=_closed_port())
    assert_one_line_error(run_up(project, timeout=120), "cannot connect to 127.0.0.1:",
                          "connection refused", "target.host and target.port")


@pytest.mark.sandbox
def test_wrong_key(hosts, tmp_path):
    host = hosts[0]
    other = sandbox.make_keypair(tmp_path / "other-ssh")
    project = write_project(tmp_path / "p", host, key=other)
    assert_one_line_error(run_up(project, timeout=120), "refused the key", str(other),
                          "'aini' and 'root'", "target.ssh_key")
    assert _untouched(host)


@pytest.mark.sandbox
def test_non_debian_host(hosts, tmp_path):
    host = hosts[1]
    host.exec("sh", "-c", "rm -f /etc/os-release /usr/lib/os-release && cat > /etc/os-release",
              input=UBUNTU_OS_RELEASE)
    project = write_project(tmp_path / "p", host)
    line = assert_one_line_error(run_up(project, timeout=300), "AINI supports Debian 12 only",
                                 "this host runs Ubuntu 22.04")
    assert "127.0.0.1" in line
    assert _untouched(host)


@pytest.mark.sandbox
@pytest.mark.parametrize("variables, expected", [
    ({"base_swap_mib": 1024}, "base_admin_keys"),  # required, missing
    ({"base_admin_keys": ["ssh-ed25519 AAAA x"], "base_swap_mib": "lots"}, "base_swap_mib"),
])
def test_role_inputs_are_checked_before_anything_changes(hosts, variables, expected):
    host = hosts[0]
    inventory = {"all": {"hosts": {"sandbox": {**host.inventory()}}}}
    with pytest.raises(AiniError) as failure:
        run_playbook("host.yml", inventory, variables={"docker_source": "debian", **variables})
    message = str(failure.value)
    assert "Validating arguments" in message and expected in message, message
    assert "\n" not in message
    assert _untouched(host)


def test_runner_maps_unreachable_to_one_line():
    inventory = {"all": {"hosts": {"nowhere": {"ansible_host": "127.0.0.1", "ansible_port": _closed_port(),
                                               "ansible_user": "root"}}}}
    with pytest.raises(AiniError) as failure:
        run_playbook("host.yml", inventory, where="127.0.0.1:1")
    message = str(failure.value)
    assert message.startswith("cannot connect to host 'nowhere'") and "connection refused" in message, message
    assert "\n" not in message


def test_hetzner_target_without_a_token_says_what_to_export(tmp_path, monkeypatch):
    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)
    project = write_project(tmp_path / "p", target="  kind: hetzner\n")
    r = run_up(project, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = [line for line in r.stderr.splitlines() if line.strip()]
    assert "no Hetzner Cloud token: export HCLOUD_TOKEN" in line, line


def test_scrubber_hides_every_line_of_a_secret():
    from aini.infra.ansible import HIDDEN, scrubber

    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQyNTUxOQAAACBnb3Jk\n-----END OPENSSH PRIVATE KEY-----\n"
    scrub = scrubber([key, "s3cr3t-value", "", "abc"])
    text = scrub("failed: b3BlbnNzaC1rZXktdjEAAAAA then s3cr3t-value, abc stays")
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in text and "s3cr3t-value" not in text
    assert text.count(HIDDEN) == 2 and "abc stays" in text  # too short to be worth hiding


def test_hidden_results_say_so_instead_of_showing_anything():
    from aini.infra.ansible import _Failure, _result_message, failure_message

    assert _result_message({"censored": "the output has been hidden", "msg": "x"}) == \
        "details hidden: the task handles secrets"
    looped = {"msg": "One or more items failed", "results": [{"failed": False}, {"failed": True, "msg": "boom",
                                                                                  "stderr": "line1\ndisk full\n"}]}
    assert _result_message(looped) == "boom: disk full"
    message = failure_message(_Failure("web", "docker : Install", "boom: disk full", unreachable=False), "1.2.3.4:22")
    assert message.startswith("task 'docker : Install' failed on host 'web' (1.2.3.4:22): boom: disk full.")
    assert "run `aini up` again" in message
