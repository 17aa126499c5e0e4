"""`molecule test` for each role's scenario (molecule/<role>/): converge, idempotence and
verify on a sandbox host. A world that cannot be built fails here, never skips."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def test_every_role_has_a_scenario():
    roles = sorted(p.name for p in (REPO / "src/aini/ansible/roles").iterdir() if p.is_dir())
    assert SCENARIOS == roles


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario, sandbox_image):  # sandbox_image: fails the test if the world is missing
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")]),
           "AINI_SANDBOX_OWNER": str(os.getpid()), "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"}
    r = subprocess.run([str(Path(bindir) / "molecule"), "test", "-s", scenario], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"molecule test -s {scenario} failed:\n{(r.stdout + r.stderr)[-6000:]}"
    for step in ("converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in r.stdout + r.stderr, step
