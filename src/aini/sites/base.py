"""The Site protocol: run a command, stream bytes through one, read and write files under
the site's root, hold the deploy lock, reach a container's port."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import IO, Protocol

from ..docker.cmd import Cmd


class FileLike(Protocol):
    content: str
    private: bool  # 0600 (an env file with secrets) rather than 0644


class Site(Protocol):
    """A directory `root` (the deployed bundle lives there) and a Docker engine reached by
    running commands. The local target's is `aini.sites.local.LocalSite`; a server's is
    `aini.sites.ssh.SshSite`, which runs the same commands over SSH."""

    root: PurePath

    def run(self, cmd: Cmd) -> subprocess.CompletedProcess:
        """Run it; text output captured. Exit code 124 when it ran out of time."""
        ...

    def stream(self, cmd: Cmd, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
               ) -> subprocess.CompletedProcess:
        """Run it with bytes flowing from `stdin` and into `stdout` without being held in memory
        (a dump into a backup, an archive out of a volume); stderr is captured as text."""
        ...

    def lock(self) -> contextlib.AbstractContextManager: ...

    def read(self, rel: str) -> str | None:
        """The text of root/rel, None when there is no such file."""
        ...

    def write(self, rel: str, text: str) -> None:
        """root/rel replaced atomically, mode 0600."""
        ...

    def sync(self, subdir: str, files: Mapping[str, FileLike], keep: Iterable[str]) -> None:
        """root/subdir holds exactly `files` (paths relative to root) and `keep`, each
        rewritten in place: a container bind-mounting one keeps seeing it."""
        ...

    def remove(self, rel: str) -> None:
        """root/rel gone, file or directory."""
        ...

    def endpoint(self, address: str, port: int) -> str:
        """A URL on this machine for a container's address:port on the site's Docker network."""
        ...
