"""Molecule's create/destroy for AINI's roles: one sandbox host (tests/harness/sandbox.py),
a Debian 12 container with systemd and sshd reached over SSH like a fresh server.

    python molecule/shared/sandbox_host.py create STATE_DIR NAME
    python molecule/shared/sandbox_host.py destroy STATE_DIR

create writes STATE_DIR/inventory.yml (root by key, like a new Hetzner server) and
STATE_DIR/host.json; destroy removes the container and its volume.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.harness import sandbox  # noqa: E402


def _owner() -> int:
    """The process whose death makes the host a leftover: the test run or `molecule` itself
    (this script and the ansible-playbook that starts it exit right away)."""
    if os.environ.get("AINI_SANDBOX_OWNER"):
        return int(os.environ["AINI_SANDBOX_OWNER"])
    pid = os.getppid()
    while pid > 1:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"molecule" in cmdline and b"ansible-playbook" not in cmdline:
                return pid
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return os.getpid()


def create(state: Path, name: str) -> None:
    state.mkdir(parents=True, exist_ok=True)
    key = sandbox.make_keypair(state / "ssh")
    host = sandbox.start_hosts(1, key, prefix=f"aini-molecule-{name}", owner=_owner())[0]
    (state / "host.json").write_text(json.dumps({"name": host.name, "volume": host.volume}))
    inventory = {"all": {"hosts": {"instance": host.inventory()}}}
    (state / "inventory.yml").write_text(json.dumps(inventory, indent=2))
    print(json.dumps({"host": host.name, "ssh_port": host.ssh_port}))


def destroy(state: Path) -> None:
    info = state / "host.json"
    if not info.exists():
        return
    data = json.loads(info.read_text())
    sandbox.SandboxHost(name=data["name"], key=Path("/dev/null"), volume=data["volume"]).remove()
    info.unlink()
    (state / "inventory.yml").unlink(missing_ok=True)


if __name__ == "__main__":
    action, state_dir = sys.argv[1], Path(sys.argv[2])
    create(state_dir, sys.argv[3]) if action == "create" else destroy(state_dir)
