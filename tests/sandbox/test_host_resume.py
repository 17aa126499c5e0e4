"""A run killed at a random task (SIGKILL to aini and everything it started, as when a
laptop dies) is finished by running `aini up` again, and nothing ends up twice.

The kill point is drawn from a seeded generator: AINI_KILL_SEED=<n> replays a failure.
The host comes from the image with docker.io preinstalled (the docker role is not what
is under test here, and a fresh download would only make the test slower).
"""
from __future__ import annotations

import os
import random
import subprocess
import time

import pytest

from hosttools import (ADMIN, admin_testinfra, image_or_fail, kill_tree, module_hosts, result_of,
                       run_up, ssh_as, up_command, write_project)
from tests.harness import sandbox

pytestmark = pytest.mark.sandbox

SEED = int(os.environ.get("AINI_KILL_SEED", "20261125"))
TASKS_IN_A_RUN = 28  # task lines a full fresh run prints, roughly; the kill lands among them


def _run_and_kill_at(project, task_number: int, delay: float) -> list[str]:
    """Start `aini up`, SIGKILL its whole process tree `delay` s after the n-th task starts."""
    proc = subprocess.Popen(up_command(), cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    seen: list[str] = []
    try:
        for line in proc.stderr:  # non-terminal progress: one line per task
            seen.append(line.rstrip())
            if len(seen) >= task_number:
                time.sleep(delay)
                break
    finally:
        kill_tree(proc.pid)
        proc.wait(timeout=30)
    return seen


def test_killed_run_is_finished_by_the_next(sandbox_key, tmp_path):
    image = image_or_fail(sandbox.docker_host_image)
    rng = random.Random(SEED)
    task_number, delay = rng.randint(3, TASKS_IN_A_RUN), round(rng.uniform(0, 1.5), 2)
    with module_hosts(1, sandbox_key, image) as (server,):
        project = write_project(tmp_path / "project", server)
        seen = _run_and_kill_at(project, task_number, delay)
        where = f"seed {SEED}: killed {delay}s after task {task_number} ({seen[-1] if seen else 'none'})"

        again = run_up(project)
        assert again.returncode == 0, f"{where}\n{again.stderr[-4000:]}"
        third = result_of(run_up(project))
        assert third["changed"] == 0 and third["connected_as"] == ADMIN, f"{where}: {third}"

        infra = admin_testinfra(server)
        pub = server.key.with_suffix(".pub").read_text().split()[1]
        counts = {
            "authorized key": infra.file(f"/home/{ADMIN}/.ssh/authorized_keys").content_string.count(pub),
            "fstab swap line": int(infra.check_output("grep -c '^/swapfile ' /etc/fstab")),
            "sudoers entry": int(infra.check_output(f"cat /etc/sudoers.d/* | grep -c '^{ADMIN} '")),
            "sshd AllowUsers drop-in": int(infra.check_output("grep -l AllowUsers /etc/ssh/sshd_config.d/* | wc -l")),
            "AINI nft table": int(infra.check_output("nft list tables | grep -c 'inet aini'")),
            "fail2ban jail file": int(infra.check_output("ls /etc/fail2ban/jail.d/ | grep -c aini")),
        }
        assert counts == dict.fromkeys(counts, 1), f"{where}: {counts}"
        # apt sources: what the image had, nothing added twice (the debian source adds none).
        sources = infra.check_output("cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -v '^#' | grep .")
        assert len(sources.splitlines()) == len(set(sources.splitlines())), f"{where}: {sources}"
        assert infra.check_output("dpkg --audit") == "", where

        # Converged, not merely finished: the state the first test module checks in depth.
        assert ssh_as(server, "root").returncode == 255, where
        for unit in ("ssh", "nftables", "fail2ban", "docker"):
            assert infra.service(unit).is_running, f"{where}: {unit}"
        assert "policy drop" in infra.check_output("nft list chain inet aini input"), where


def test_admin_user_without_sudo_yet_is_passed_over(sandbox_host, tmp_path):
    """A run stopped after the admin's key was authorised but before its sudoers entry:
    the admin logs in but cannot configure anything, so the next run goes in as root."""
    from aini.infra.server import find_login
    from aini.sites.ssh import SshAccess

    pub = sandbox_host.key.with_suffix(".pub").read_text()
    sandbox_host.exec("sh", "-c", f"useradd -m -s /bin/bash {ADMIN} && install -d -o {ADMIN} -m 700 /home/{ADMIN}/.ssh"
                      f" && cat > /home/{ADMIN}/.ssh/authorized_keys && chown {ADMIN} /home/{ADMIN}/.ssh/authorized_keys",
                      input=pub)
    access = SshAccess("127.0.0.1", sandbox_host.ssh_port, sandbox_host.key, tmp_path / "known_hosts")
    assert ssh_as(sandbox_host, ADMIN).returncode == 0
    user, ram_mib = find_login(access, "root")
    assert user == "root" and ram_mib and ram_mib > 0
    sandbox_host.exec("sh", "-c", f"echo '{ADMIN} ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/90-aini-admin")
    assert find_login(access, "root")[0] == ADMIN
