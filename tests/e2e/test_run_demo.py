"""`./run demo` in a fresh copy of the repository, as a new user runs it on a machine with a
Docker engine but no Compose v2 (Debian's docker.io): the set-up brings Compose v2 itself,
so the run gets past the Compose check and stops, as designed here, at the image check —
this machine reaches no registry — with exit 1 and nothing started."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Stands for a docker CLI without the compose plugin in its system directories (the plugin
# directories other than the user's cannot be hidden without root): `docker compose` is an
# unknown command until a plugin sits in the user's ~/.docker/cli-plugins.
DOCKER_WITHOUT_COMPOSE = """#!/bin/sh
if [ "$1" = compose ] && [ ! -x "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose" ]; then
  echo "docker: unknown command: docker compose" >&2
  exit 1
fi
exec %s "$@"
"""


def copy_of_the_tree(dest: Path) -> None:
    """The working tree as a clone would have it, with uncommitted changes: tracked and
    untracked files, not what .gitignore keeps out (.venv, demo/, caches)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True).stdout
    dest.mkdir(parents=True)
    listed = subprocess.run(["tar", "--null", "-T", "-", "-cf", "-"], cwd=REPO, input=files, check=True,
                            capture_output=True).stdout
    subprocess.run(["tar", "-xf", "-", "-C", str(dest)], input=listed, check=True)


def demo_resources(docker: str) -> set[str]:
    """Containers, networks and volumes labelled with the demo's project (aini.yml's default,
    aini): other stacks on the shared engine (the e2e tests' project is e2e) are not its."""
    found = set()
    for kind in ("container", "network", "volume"):
        extra = ["-a"] if kind == "container" else []
        listed = subprocess.run([docker, kind, "ls", *extra, "--filter", "label=aini.project=aini", "--format",
                                 "{{.Names}}" if kind == "container" else "{{.Name}}"],
                                check=True, capture_output=True, text=True, timeout=60).stdout.split()
        found |= {f"{kind}:{name}" for name in listed}
    return found


def pip_cache() -> str:
    r = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else str(Path.home() / ".cache" / "pip")


def test_run_demo_brings_compose_v2_and_stops_at_the_image_check(tmp_path: Path):
    real_docker = subprocess.run(["sh", "-c", "command -v docker"], capture_output=True, text=True).stdout.strip()
    assert real_docker, "this test needs the docker CLI and a running engine (`./run test` sets them up)"
    repo, home, bin_dir = tmp_path / "repo", tmp_path / "home", tmp_path / "bin"
    copy_of_the_tree(repo)
    home.mkdir()
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(DOCKER_WITHOUT_COMPOSE % real_docker)
    (bin_dir / "docker").chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("AINI_DOCKER", "DOCKER_CONFIG", "VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("COMPOSE_")}
    # A new user's HOME (no ~/.docker), the shared pip cache so the fresh venv is quick.
    env.update(HOME=str(home), PATH=f"{bin_dir}:{env['PATH']}", PIP_CACHE_DIR=pip_cache())
    plugin = home / ".docker" / "cli-plugins" / "docker-compose"

    before = subprocess.run(["docker", "compose", "version"], env=env, capture_output=True, text=True)
    assert before.returncode != 0, "the arranged machine must start without Compose v2"
    resources_before = demo_resources(real_docker)

    r = subprocess.run(["./run", "demo"], cwd=repo, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=1800)
    out = r.stdout + r.stderr
    try:
        assert "Compose v2 is missing" not in out, out[-3000:]
        assert "==> installing Docker Compose v2" in out, out[-3000:]
        assert r.returncode == 1, out[-3000:]
        # `aini up` reached its image check and stopped there, saying what to do.
        assert "these images are not on the Docker engine and could not be pulled:" in r.stderr, out[-3000:]
        assert "Traceback" not in out
        assert demo_resources(real_docker) == resources_before
    finally:
        # Whatever happened, the demo's project leaves nothing behind on the shared engine.
        for resource in demo_resources(real_docker) - resources_before:
            kind, name = resource.split(":", 1)
            subprocess.run([real_docker, kind, "rm", "-f", name], capture_output=True, timeout=120)

    # Before `aini up`, init/validate/plan ran in the copy's demo/ with the copy's own venv.
    assert (repo / "demo" / "aini.yml").is_file() and (repo / ".venv" / "bin" / "aini").is_file()
    # `docker compose` typed by hand now works for this user, with the official v2 binary.
    assert plugin.is_file() and os.access(plugin, os.X_OK)
    version = subprocess.run(["docker", "compose", "version", "--short"], env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip().startswith("2."), version.stdout + version.stderr
