"""A project: its aini.yml and the private directory beside it, `.aini/`, which holds the
secret store, the break-glass file, the control-plane credentials, the local CA, the SSH
known hosts and the local target's deployed copy. Every path under `.aini/` is named here,
once, so no caller builds one by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import AiniConfig

STORE_DIR = ".aini"
DEPLOYED_DIR = "deployed"  # the copy compose runs from on the local target, and what was deployed
CA_DIR = "local-ca"
KNOWN_HOSTS = "known_hosts"
SSH_PORTS = "ssh-ports.json"  # the SSH port each host was last configured with


@dataclass(frozen=True)
class Project:
    config: AiniConfig
    root: Path  # the directory of aini.yml: relative paths in it start here
    source: Path | None = None  # the file it was read from (-c), when not root/aini.yml

    @property
    def config_file(self) -> Path:
        return self.source or self.root / "aini.yml"

    @property
    def aini_dir(self) -> Path:
        return private_dir(self.root)

    @property
    def deployed_dir(self) -> Path:
        return self.aini_dir / DEPLOYED_DIR

    @property
    def ca_dir(self) -> Path:
        return self.aini_dir / CA_DIR


def private_dir(root: Path) -> Path:
    """`.aini/` of the project whose aini.yml is in `root` (not created)."""
    return root / STORE_DIR


def ensure_private(directory: Path) -> Path:
    """`directory` (`.aini/`), created 0700 with a .gitignore that keeps it out of any commit."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# secrets: never commit this directory\n*\n")
    return directory


def write_private(path: Path, content: str) -> None:
    """Write a 0600 file atomically: it is never visible half-written or with a wider mode."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
