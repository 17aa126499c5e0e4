"""The real stack: AINI's rendered bundle deployed verbatim (the same compose files,
configuration files, volumes and networks as a user's `aini up` on the local target) with
the real, pinned upstream images pulled from their registries — no overrides, no doubles.

This is the proof that the stack users get starts. It needs the upstream registries; on a
machine that cannot reach them (as those that build AINI) every test here is skipped, says
why, and is counted in the one-line summary at the end of the run (tests/conftest.py),
never as passing. Run it where Docker Hub is reachable:

    ./run test -m upstream
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aini import catalog
from tests.e2e.stack import PASSPHRASE_ENV, Stack, free_port, stack_config
from tests.harness.upstream import REGISTRY, registry_unreachable

pytestmark = pytest.mark.upstream


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory):
    reason = registry_unreachable()
    if reason:
        pytest.skip(f"Docker Hub ({REGISTRY[0]}) is not reachable from this machine ({reason}); "
                    "the real stack was not deployed")
    from tests.harness.docker_engine import ensure_engine

    docker = ensure_engine()
    project = tmp_path_factory.mktemp("upstream-stack")
    s = Stack(project, stack_config({}), free_port(), free_port(), docker)
    s.teardown()
    try:
        (project / "aini.yml").write_text(json.dumps(s.data))
        r = subprocess.run([sys.executable, "-m", "aini", "up"], cwd=project, capture_output=True, text=True,
                           timeout=3600, env={**os.environ, **PASSPHRASE_ENV}, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"aini up with the real images failed:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
        yield s
    finally:
        s.teardown()


def test_every_group_of_the_real_stack_is_healthy_and_status_agrees(real_stack: Stack):
    r = subprocess.run([sys.executable, "-m", "aini", "status", "--json"], cwd=real_stack.project_dir,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    rows = {row["service"]: row for row in json.loads(r.stdout)["services"]}
    assert set(rows) == {s.name for s in catalog.enabled(real_stack.config)}


def test_consul_and_vault_run_as_their_image_users_with_raft_in_the_volume(real_stack: Stack):
    owner = real_stack.docker_cmd("exec", "aini-vault", "stat", "-c", "%U", "/vault/file/vault.db").strip()
    assert owner == "vault"
    leader = real_stack.docker_cmd("exec", "aini-consul", "wget", "-qO-", "http://127.0.0.1:8500/v1/status/leader")
    assert leader.strip().strip('"')


def test_nextcloud_installed_with_its_config_directory_owned_by_www_data(real_stack: Stack):
    status = real_stack.docker_cmd("exec", "aini-nextcloud", "curl", "-fsS", "http://127.0.0.1/status.php")
    assert json.loads(status)["installed"] is True
    owner = real_stack.docker_cmd("exec", "aini-nextcloud", "stat", "-c", "%U", "/var/www/html/config/config.php")
    assert owner.strip() == "www-data"
