"""Bring up a local Docker engine for the test world.

CI runs as root on a fresh Debian 12 machine where nothing starts dockerd for us, so
the harness installs what is missing with apt-get and starts the daemon itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

DOCKERD_LOG = Path(os.environ.get("AINI_DOCKERD_LOG", "/var/log/aini-dockerd.log"))
ENGINE_TIMEOUT = 60.0


class EngineError(RuntimeError):
    """The Docker engine (or a tool the world needs) could not be made available."""


def docker_cli() -> str:
    # docker.io's own client matches its 20.10 daemon; a newer client elsewhere on PATH
    # would only negotiate down to it.
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise EngineError("no docker client found (apt-get install docker.io)")


def engine_answers() -> bool:
    try:
        cli = docker_cli()
    except EngineError:
        return False
    try:
        return subprocess.run([cli, "info"], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


_apt_updated = False


def apt_install(*packages: str) -> None:
    global _apt_updated
    if os.geteuid() != 0:
        raise EngineError(f"need root to apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]]
    if not _apt_updated:
        steps.insert(0, ["apt-get", "update", "-q"])
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise EngineError(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    _apt_updated = True


def ensure_tools() -> None:
    # ssh/ssh-keygen: the session key and every SSH client (Ansible, testinfra) need them.
    wanted = (("dockerd", "docker.io"), ("debootstrap", "debootstrap"),
              ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"))
    missing = sorted({pkg for tool, pkg in wanted
                      if not shutil.which(tool) and not Path("/usr/sbin", tool).exists()})
    if missing:
        apt_install(*missing)


def ensure_engine(timeout: float = ENGINE_TIMEOUT) -> str:
    """Return the docker client path once `docker info` answers; start dockerd if needed."""
    ensure_tools()
    if engine_answers():
        return docker_cli()
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(DOCKERD_LOG, "ab") as log:
        # Detached into its own session so it outlives the test run and later runs reuse it.
        proc = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_answers():
            return docker_cli()
        if proc.poll() is not None and not engine_answers():
            break
        time.sleep(0.5)
    tail = DOCKERD_LOG.read_text(errors="replace")[-3000:] if DOCKERD_LOG.exists() else ""
    raise EngineError(f"dockerd did not answer within {timeout:.0f}s "
                      f"(exit={proc.poll()}); log {DOCKERD_LOG}:\n{tail}")


if __name__ == "__main__":
    print(ensure_engine())
