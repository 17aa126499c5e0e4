"""Run AINI's playbooks with ansible-runner: a live progress line, per-host stats, and a
failure turned into one `AiniError` line that names the task, the host and what to do.

Nothing secret reaches argv or the terminal: variables go to a 0600 file in a private
temporary directory that is deleted after the run, ansible-runner keeps its artifacts
there too, and every message shown is scrubbed of the secret values the caller names.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AiniError

ANSIBLE_DIR = Path(__file__).parent.parent / "ansible"  # package data: the playbooks and roles
HIDDEN = "********"
_MIN_SECRET_LEN = 4  # shorter values would blank out ordinary words


@dataclass(frozen=True)
class HostStats:
    ok: int = 0  # includes changed, as in Ansible's recap
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class RunResult:
    stats: dict[str, HostStats]
    elapsed: float

    @property
    def changed(self) -> int:
        return sum(s.changed for s in self.stats.values())


@dataclass
class _Failure:
    host: str
    task: str
    message: str
    unreachable: bool
    written_for_people: bool = False  # an assert, fail or argument check already says what is wrong


class Progress:
    """Receives runner events; the default shows nothing."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def task(self, role: str | None, task: str) -> None:
        return None

    def host(self, host: str) -> None:
        return None

    def result(self, host: str, changed: bool) -> None:
        return None


class ConsoleProgress(Progress):
    """One live line on a terminal (task, host, elapsed); one line per task elsewhere (CI logs)."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.started = time.monotonic()
        self.role: str | None = None
        self.name = "connecting"
        self.current_host: str | None = None
        self.done = 0
        self.changed = 0
        self._live = None

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def _line(self):
        from rich.text import Text

        where = f"{self.role} · " if self.role else ""
        host = f" · {self.current_host}" if self.current_host else ""
        return Text.assemble(
            (f"{where}{self.name}", "bold"), host, (f" · {self._elapsed()}", "dim"),
            (f" · {self.done} tasks, {self.changed} changed", "dim"),
        )

    def __enter__(self) -> ConsoleProgress:
        if self.console.is_terminal:
            from rich.live import Live
            from rich.spinner import Spinner

            outer = self

            class _Line:  # re-rendered on every refresh, so the elapsed time keeps moving
                def __rich__(self):
                    return outer._line()

            self._live = Live(Spinner("dots", text=_Line()), console=self.console,
                              refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def task(self, role: str | None, task: str) -> None:
        self.role, self.name = role, task
        if self._live is None:
            where = f"{role} · " if role else ""
            self.console.print(f"[{self._elapsed()}] {where}{task}", markup=False, highlight=False,
                               soft_wrap=True)

    def host(self, host: str) -> None:
        self.current_host = host

    def result(self, host: str, changed: bool) -> None:
        self.current_host = host
        self.done += 1
        self.changed += int(changed)


def scrubber(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function replacing every known secret value (and each line of a multi-line one)."""
    values: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        values.add(secret)
        values.update(line.strip() for line in secret.splitlines())
    ordered = sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def scrub(text: str) -> str:
        return pattern.sub(HIDDEN, text) if pattern else text

    return scrub


# Ansible's words for why a host could not be reached -> (cause, what to do).
_CAUSES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"Permission denied \(publickey|Permission denied, please try again"),
     "SSH refused the key", "check target.ssh_key and target.user in aini.yml"),
    (re.compile(r"Connection refused"),
     "nothing accepts SSH connections there (connection refused)",
     "check target.host and target.port in aini.yml, and that the server is running"),
    (re.compile(r"timed out|Connection timed out"),
     "no answer from the server (timed out)",
     "check target.host and target.port, and that no firewall drops SSH"),
    (re.compile(r"Could not resolve hostname|Name or service not known"),
     "the host name does not resolve", "check target.host in aini.yml"),
    (re.compile(r"No route to host|Network is unreachable"),
     "no network route to the server", "check target.host and your network"),
    (re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed"),
     "the server's SSH host key is not the one seen before",
     "if you rebuilt the server, delete its line from .aini/known_hosts and run again"),
    (re.compile(r"python3?: (not found|No such file)|/usr/bin/python3: No such file|Failed to find required executable python"),
     "python3 is missing on the server", "install it there (apt-get install python3) and run again"),
]


def explain(message: str) -> tuple[str, str] | None:
    for pattern, cause, hint in _CAUSES:
        if pattern.search(message):
            return cause, hint
    return None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _result_message(res: Mapping[str, Any]) -> str:
    if res.get("censored") or res.get("_ansible_no_log"):
        return "details hidden: the task handles secrets"
    for item in res.get("results") or []:  # a loop: the first item that failed says why
        if isinstance(item, Mapping) and item.get("failed"):
            return _result_message(item)
    message = str(res.get("msg") or res.get("reason") or "").strip()
    detail = ""
    for stream in ("stderr", "module_stderr", "stdout", "module_stdout"):
        lines = [line for line in str(res.get(stream) or "").splitlines() if line.strip()]
        if lines:
            detail = lines[-1].strip()
            break
    if detail and detail not in message:
        message = f"{message}: {detail}" if message else detail
    return message or "no message"


def _task_label(event_data: Mapping[str, Any]) -> tuple[str | None, str]:
    role = event_data.get("role") or None
    task = str(event_data.get("task") or event_data.get("name") or "task")
    if role and task.startswith(f"{role} : "):
        task = task[len(role) + 3 :]
    return role, task


class _Collector:
    def __init__(self, progress: Progress, scrub: Callable[[str], str]):
        self.progress = progress
        self.scrub = scrub
        self.failure: _Failure | None = None
        self.stats: dict[str, HostStats] = {}
        self.errors: list[str] = []

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_task_start":
            self.progress.task(*_task_label(data))
        elif kind == "runner_on_start":
            self.progress.host(data.get("host", ""))
        elif kind in ("runner_on_ok", "runner_on_skipped"):
            self.progress.result(data.get("host", ""), bool((data.get("res") or {}).get("changed")))
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            self._fail(data, unreachable=False)
        elif kind == "runner_on_unreachable":
            self._fail(data, unreachable=True)
        elif kind == "playbook_on_stats":
            self.stats = _stats(data)
        elif kind in ("error", "verbose") and "ERROR" in str(event.get("stdout", "")):
            self.errors.append(str(event.get("stdout", "")))
        return False  # keep nothing on disk: results may hold what the task handled

    def _fail(self, data: Mapping[str, Any], unreachable: bool) -> None:
        # The last one wins: a host stops at its first fatal failure, so an earlier event
        # was one a task chose to tolerate (ignore_unreachable) and the last says why it stopped.
        role, task = _task_label(data)
        name = f"{role} : {task}" if role else task
        message = self.scrub(_result_message(data.get("res") or {}))
        action = str(data.get("task_action") or "").rsplit(".", 1)[-1]
        self.failure = _Failure(data.get("host", "?"), name, message, unreachable,
                                written_for_people=action in ("assert", "fail", "validate_argument_spec"))


def _stats(data: Mapping[str, Any]) -> dict[str, HostStats]:
    keys = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
            "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
    hosts = set().union(*(data.get(k) or {} for k in keys))
    return {h: HostStats(**{field_: int((data.get(k) or {}).get(h, 0)) for k, field_ in keys.items()})
            for h in sorted(hosts)}


def failure_message(failure: _Failure, where: str | None = None) -> str:
    host = f"'{failure.host}'" + (f" ({where})" if where else "")
    if failure.written_for_people:
        return f"host {host}: {_one_line(failure.message)} (task '{failure.task}')."
    known = explain(failure.message)
    first_contact = failure.task.lower().startswith("gathering facts")
    if failure.unreachable or (known and first_contact):
        cause, hint = known or (_one_line(failure.message, 200), "check the server is running and reachable over SSH")
        during = "" if first_contact else f" during task '{failure.task}'"
        return f"cannot connect to host {host} over SSH{during}: {cause}; {hint}."
    # A task's own failure is shown as it is: "does not resolve" inside a task is about the
    # URL it fetched, not about the address AINI connects to.
    return (f"task '{failure.task}' failed on host {host}: {_one_line(failure.message)}. "
            "Fix the cause and run `aini up` again: it continues where it stopped.")


def run_playbook(
    playbook: str,
    inventory: Mapping[str, Any],
    *,
    variables: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
    progress: Progress | None = None,
    where: str | None = None,
) -> RunResult:
    """Run ansible/playbooks/<playbook> against `inventory` (a YAML/JSON inventory dict).

    `variables` become extra vars through a 0600 file (never argv); `secrets` are values
    that must never be shown (the values of `variables` are not assumed to be secret).
    Raises AiniError naming the task, the host and what to do when the run fails.
    """
    import ansible_runner

    scrub = scrubber(secrets)
    progress = progress or Progress()
    collector = _Collector(progress, scrub)
    cancel = {"requested": False}

    def request_cancel(signum, frame):  # noqa: ARG001 - signal handler signature
        cancel["requested"] = True

    started = time.monotonic()
    _remove_leftovers()
    with tempfile.TemporaryDirectory(prefix=f"{_RUN_PREFIX}{os.getpid()}-") as private:
        os.chmod(private, 0o700)
        root = Path(private)
        inventory_path = _write_private(root / "inventory" / "hosts.json", inventory)
        cmdline = ""
        if variables:
            cmdline = f"-e @{_write_private(root / 'vars' / 'extra.json', variables)}"
        bindir = str(Path(sys.executable).parent)
        envvars = {
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles"),
            "ANSIBLE_HOST_KEY_CHECKING": "True",  # ansible-runner turns it off unless told
            "ANSIBLE_LOCAL_TEMP": str(root / "tmp"),
            # Per run: a master connection left by an earlier run (maybe another key) is never reused.
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(root / "cp"),
            "ANSIBLE_NOCOLOR": "1",
            # The ansible-playbook beside this Python, even when its venv is not activated.
            "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")]),
        }
        # Ctrl-C must stop ansible-playbook too (it runs in its own session and never sees
        # the terminal's SIGINT): turn the signal into ansible-runner's cancel.
        in_main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, request_cancel) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
        try:
            with progress:
                runner = ansible_runner.run(
                    private_data_dir=private,
                    project_dir=str(ANSIBLE_DIR),
                    playbook=str(Path("playbooks") / playbook),
                    inventory=str(inventory_path),
                    cmdline=cmdline or None,
                    envvars=envvars,
                    event_handler=collector,
                    cancel_callback=lambda: cancel["requested"],
                    quiet=True,
                    suppress_output_file=True,
                    suppress_env_files=True,
                    settings={"pexpect_timeout": 1, "suppress_ansible_output": True},
                    json_mode=False,
                )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    elapsed = time.monotonic() - started
    if cancel["requested"] or runner.status == "canceled":
        raise KeyboardInterrupt
    if collector.failure is not None and (runner.status != "successful" or runner.rc != 0):
        raise AiniError(failure_message(collector.failure, where))
    if runner.status != "successful" or runner.rc != 0:
        detail = next((line for line in reversed("\n".join(collector.errors).splitlines()) if "ERROR" in line), "")
        detail = _one_line(scrub(detail.replace("[ERROR]:", "").replace("ERROR!", "")).strip(), 300)
        raise AiniError(f"ansible-playbook stopped ({runner.status}, exit code {runner.rc})"
                        + (f": {detail}" if detail else ""))
    return RunResult(stats=collector.stats, elapsed=elapsed)


_RUN_PREFIX = "aini-run-"


def _remove_leftovers() -> None:
    """Private directories of runs that were killed (SIGKILL skips the cleanup): their
    variable files may hold secrets, so they go as soon as their process is gone."""
    import shutil

    for leftover in Path(tempfile.gettempdir()).glob(f"{_RUN_PREFIX}*-*"):
        try:
            pid = int(leftover.name[len(_RUN_PREFIX):].split("-", 1)[0])
            if leftover.stat().st_uid != os.getuid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except (ValueError, OSError):
            continue


def _write_private(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(unsafe(data), handle)
    return path


def unsafe(value: Any) -> Any:
    """Every string marked unsafe for Ansible's templating (its JSON form of `!unsafe`): a
    value from aini.yml or a key file reaches the server as written, `{{ 7*7 }}` included."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, Mapping):
        return {k: unsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unsafe(v) for v in value]
    return value


__all__ = ["ANSIBLE_DIR", "ConsoleProgress", "HostStats", "Progress", "RunResult", "explain",
           "failure_message", "run_playbook", "scrubber"]
