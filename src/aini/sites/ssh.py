"""A server's Docker engine over SSH: the same commands as on the local engine, run as the
admin user with `sudo -n` (the bundle's env files are root's, 0600).

Kamal's idea: the deploy decides with pure functions and builds argv lists; this module
only carries them across. One SSH master connection per deploy keeps the many small
commands cheap; the bundle travels as a tar stream on stdin (secrets never in argv), and
GNU tar's --overwrite rewrites files in place, so a bind mount of a file keeps seeing it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ..docker.cmd import Cmd, Tools
from ..errors import AiniError
from .base import FileLike
from .local import spawn

REMOTE_BASE = PurePosixPath("/opt/aini")
REMOTE_ROOT = REMOTE_BASE / "deployed"
LOCK_FILE = REMOTE_BASE / "deploy.lock"
REMOTE_TOOLS = Tools(("docker",), ("docker", "compose"))
LOCK_BUSY = 75  # flock's exit code when another deploy holds the lock
MISSING = 3
SSH_TIMEOUT = 15


@dataclass(frozen=True)
class SshAccess:
    host: str
    port: int
    key: Path
    known_hosts: Path

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def options(self) -> list[str]:
        # Trust on first use, remembered per project: a changed host key is an error.
        return ["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={self.known_hosts}"]

    def argv(self, user: str, command: str, *options: str) -> list[str]:
        """`ssh ... user@host command`; `options` go before the destination (-o pairs)."""
        return ["ssh", *self.options(), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_TIMEOUT}",
                "-o", "LogLevel=ERROR", *options, "-i", str(self.key), "-p", str(self.port), "-l", user,
                "--", self.host, command]

    def run(self, user: str, command: str) -> subprocess.CompletedProcess:
        argv = self.argv(user, command)
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=SSH_TIMEOUT + 30,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise AiniError("the ssh client is not installed here (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise AiniError(f"cannot connect to {self.where} over SSH: no answer within "
                            f"{SSH_TIMEOUT + 30} s; check target.host and target.port") from None


def tar_bundle(files: Mapping[str, FileLike], mtime: float | None = None) -> bytes:
    """A tar of `files` (path -> object with .content/.private), root-owned, 0600 for the
    private ones: what the server's copy must look like."""
    stamp = int(time.time() if mtime is None else mtime)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = sorted({str(PurePosixPath(rel).parents[i]) for rel in files
                       for i in range(len(PurePosixPath(rel).parents) - 1)})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, stamp
            tar.addfile(info)
        for rel, file in sorted(files.items()):
            data = file.content.encode()
            info = tarfile.TarInfo(rel)
            info.size, info.mtime = len(data), stamp
            info.mode = 0o600 if file.private else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def stale_files(present: Iterable[str], wanted: Iterable[str]) -> list[str]:
    return sorted(set(present) - set(wanted))


@dataclass
class SshSite:
    """A server's Docker engine and its copy of the bundle under REMOTE_ROOT."""

    access: SshAccess
    user: str
    control_path: str
    root: PurePosixPath = REMOTE_ROOT

    def ssh_argv(self, remote: str) -> list[str]:
        return self.access.argv(self.user, remote, "-o", "ControlMaster=auto", "-o",
                                f"ControlPath={self.control_path}", "-o", "ControlPersist=120",
                                "-o", "ServerAliveInterval=15")

    def sudo(self, argv: Iterable[str]) -> str:
        return "sudo -n " + shlex.join(list(argv))

    def _exec(self, remote: str, timeout: float, data: bytes = b"", stdin: IO[bytes] | None = None,
              stdout: IO[bytes] | None = None) -> subprocess.CompletedProcess:
        result = spawn(self.ssh_argv(remote), timeout, _ssh_env(), data=data, stdin=stdin, stdout=stdout,
                       missing="the ssh client is not installed here (apt-get install openssh-client)")
        if result.returncode == 255:  # ssh itself failed, not the command
            raise AiniError(f"lost the SSH connection to {self.access.where}: "
                            f"{(result.stderr.strip().splitlines() or ['no answer'])[-1][:200]}; run the command again")
        return result

    def run(self, cmd: Cmd) -> subprocess.CompletedProcess:
        return self._exec(self.sudo(cmd.argv), cmd.timeout)

    def _check(self, r: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
        if r.returncode != 0:
            raise AiniError(f"{what} on {self.access.where} failed: {r.stderr.strip()[-300:] or r.returncode}")
        return r

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The deploy lock lives on the server, held by a remote `flock` as long as this SSH
        session stays open: a deploy that dies (Ctrl-C, a lost laptop) releases it."""
        script = (f"mkdir -p -m 700 {REMOTE_BASE} && exec flock -n -E {LOCK_BUSY} {LOCK_FILE} "
                  "sh -c 'echo locked; exec cat >/dev/null'")
        proc = subprocess.Popen(self.ssh_argv("sudo -n sh -c " + shlex.quote(script)), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_ssh_env())
        assert proc.stdout and proc.stdin
        first = proc.stdout.readline().decode(errors="replace").strip()
        if first != "locked":
            code = proc.wait(timeout=SSH_TIMEOUT + 30)
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            if code == LOCK_BUSY:
                raise AiniError(f"another deploy is running on {self.access.where}; wait for it to finish")
            raise AiniError(f"cannot take the deploy lock on {self.access.where}: {err[-300:] or code}")
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def read(self, rel: str) -> str | None:
        path = shlex.quote(str(self.root / rel))
        r = self._exec(self.sudo(["sh", "-c", f"if [ -f {path} ]; then cat {path}; else exit {MISSING}; fi"]), 60)
        if r.returncode == MISSING:
            return None
        return self._check(r, f"reading {self.root / rel}").stdout

    def stream(self, cmd: Cmd, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
               ) -> subprocess.CompletedProcess:
        return self._exec(self.sudo(cmd.argv), cmd.timeout, stdin=stdin,
                          stdout=stdout or subprocess.DEVNULL)  # type: ignore[arg-type]

    def write(self, rel: str, text: str) -> None:
        target = shlex.quote(str(self.root / rel))
        root = shlex.quote(str(self.root))
        script = f"umask 077 && mkdir -p -m 700 {root} && cat > {target}.new && mv {target}.new {target}"
        self._check(self._exec(self.sudo(["sh", "-c", script]), 60, text.encode()), f"writing {self.root / rel}")

    def sync(self, subdir: str, files: Mapping[str, FileLike], keep: Iterable[str]) -> None:
        root = shlex.quote(str(self.root))
        self._check(self._exec(self.sudo(["sh", "-c", f"mkdir -p -m 700 {root} && tar -x --overwrite -C {root}"]),
                               300, tar_bundle(files)), f"copying the files of '{subdir}'")
        listing = self._check(self._exec(self.sudo(["find", str(self.root / subdir), "-type", "f"]), 60),
                              f"listing {self.root / subdir}")
        present = [str(PurePosixPath(p).relative_to(self.root)) for p in listing.stdout.split("\n") if p]
        stale = stale_files(present, [*files, *keep])
        if stale:
            self._check(self._exec(self.sudo(["rm", "-f", "--", *(str(self.root / p) for p in stale)]), 60),
                        f"removing old files of '{subdir}'")

    def remove(self, rel: str) -> None:
        self._check(self._exec(self.sudo(["rm", "-rf", "--", str(self.root / rel)]), 120), f"removing {self.root / rel}")

    def forward(self, address: str, port: int) -> int:
        """A local port forwarded to address:port as seen from the server (a container on
        its Docker network), through the master connection: the control plane's APIs are
        reached this way, never published on the server."""
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            local = s.getsockname()[1]
        self._exec("true", 60)  # the master connection must exist before -O forward
        r = subprocess.run(["ssh", "-o", f"ControlPath={self.control_path}", "-O", "forward",
                            "-L", f"127.0.0.1:{local}:{address}:{port}", "--", self.access.host],
                           capture_output=True, text=True, timeout=30, env=_ssh_env())
        if r.returncode != 0:
            raise AiniError(f"cannot forward a port to {address}:{port} on {self.access.where}: "
                            f"{r.stderr.strip()[-200:] or r.returncode}")
        return local

    def endpoint(self, address: str, port: int) -> str:
        return f"http://127.0.0.1:{self.forward(address, port)}"

    def close(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["ssh", "-o", f"ControlPath={self.control_path}", "-O", "exit", "--", self.access.host],
                           capture_output=True, timeout=10, env=_ssh_env())


def _ssh_env() -> dict[str, str]:
    # LC_* would be forwarded by ssh (SendEnv) and complain on a server without the locale.
    return {k: v for k, v in os.environ.items() if not k.startswith("LC_")}


@contextlib.contextmanager
def ssh_site(access: SshAccess, user: str) -> Iterator[SshSite]:
    """An SshSite with its own master connection, closed on exit. The control socket sits
    in a private temp dir: its path must be short (a Unix socket) and nobody else's."""
    with tempfile.TemporaryDirectory(prefix="aini-ssh-") as tmp:
        os.chmod(tmp, 0o700)
        site = SshSite(access, user, str(Path(tmp) / "c"))
        try:
            yield site
        finally:
            site.close()


__all__ = ["REMOTE_ROOT", "REMOTE_TOOLS", "SSH_TIMEOUT", "SshAccess", "SshSite", "ssh_site", "stale_files", "tar_bundle"]
