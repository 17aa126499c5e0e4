"""The Watchtower TEST DOUBLE parses WATCHTOWER_SCHEDULE as robfig/cron v3 does (refusing
to start on what upstream refuses) and applies the enable/monitor-only labels to the
containers the Docker API lists. Upstream facts and sources: watchtower_double.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from aini.config import WatchtowerOptions

REPO = Path(__file__).resolve().parents[2]
DOUBLES = REPO / "tests" / "harness" / "images" / "doubles"
sys.path.insert(0, str(DOUBLES))
import watchtower_double  # noqa: E402


@pytest.mark.parametrize("spec", [WatchtowerOptions().schedule, '"0 0 4 * * *"', "'0 30 3 * * 1-5'",
                                  "0 */15 * * * *", "0 0 4 * * sun", "@daily", "@every 1h30m"])
def test_schedules_upstream_accepts(spec: str):
    watchtower_double.parse_schedule(spec)


@pytest.mark.parametrize(("spec", "message"), [
    ("0 4 * * *", "expected exactly 6 fields, found 5: [0 4 * * *]"),
    ("0 0 24 * * *", "end of range (24) above maximum (23): 24"),
    ("0 0 4 * * SAT#4", 'failed to parse int from SAT#4: strconv.Atoi: parsing "SAT#4": invalid syntax'),
    ("0 0 4 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("0 0 4 * * */0", "step of range should be a positive number: */0"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
])
def test_schedules_upstream_refuses(spec: str, message: str):
    with pytest.raises(watchtower_double.CronError) as refused:
        watchtower_double.parse_schedule(spec)
    assert str(refused.value) == message


def _start(**env: str) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHTOWER_", "DOCKER_HOST"))}
    return subprocess.Popen([sys.executable, str(DOUBLES / "double.py")],
                            env={**full, "AINI_DOUBLE": "watchtower", "PYTHONDONTWRITEBYTECODE": "1", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _lines_until(process: subprocess.Popen, marker: str, timeout: float = 20) -> str:
    """Output up to the line containing marker (the double keeps running after it)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"no {marker!r} in: {''.join(seen)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)


def test_an_invalid_schedule_stops_the_double_with_upstreams_message():
    process = _start(WATCHTOWER_SCHEDULE="0 4 * * *", DOCKER_HOST="unix:///nonexistent.sock")
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 1
    assert 'Scheduled upgrades failed error="failed to schedule updates: expected exactly 6 fields, found 5' in out


def test_an_unreachable_docker_api_does_not_stop_watchtower_as_upstream():
    process = _start(WATCHTOWER_SCHEDULE="0 0 4 * * *", DOCKER_HOST="unix:///nonexistent.sock")
    try:
        out = _lines_until(process, "Schedule accepted")
        assert "Ping failed during initialization" in out
        time.sleep(0.5)
        assert process.poll() is None
    finally:
        _stop(process)


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check)


def test_labels_decide_what_is_watched_through_the_docker_api():
    from tests.harness import stack_images

    image = stack_images.doubles_base()
    tag = uuid.uuid4().hex[:8]
    labels = {
        "enabled": ["--label", f"{watchtower_double.ENABLE}=true"],
        "monitored": ["--label", f"{watchtower_double.ENABLE}=true", "--label", f"{watchtower_double.MONITOR_ONLY}=true"],
        "unlabelled": [],
        "disabled": ["--label", f"{watchtower_double.ENABLE}=false"],
    }
    names = {key: f"aini-t-wt-{key}-{tag}" for key in labels}
    try:
        for key, extra in labels.items():
            _docker("run", "-d", "--name", names[key], *extra, "--entrypoint", "sleep", image, "300")
        verdicts = {}
        for label_enable in ("true", "false"):
            process = _start(WATCHTOWER_SCHEDULE="0 0 4 * * *", WATCHTOWER_LABEL_ENABLE=label_enable,
                             DOCKER_HOST="unix:///var/run/docker.sock")
            try:
                out = _lines_until(process, "Schedule accepted", timeout=40)
            finally:
                _stop(process)
            verdicts[label_enable] = {key: next((line.split("msg=")[1] for line in out.splitlines()
                                                 if line.rstrip('"').endswith(names[key])
                                                 or f"{names[key]} (" in line), None) for key in labels}
        assert verdicts["true"] == {
            "enabled": f'"would watch {names["enabled"]} (update)"',
            "monitored": f'"would watch {names["monitored"]} (monitor-only)"',
            "unlabelled": f'"not watched: {names["unlabelled"]}"',
            "disabled": f'"not watched: {names["disabled"]}"',
        }
        assert verdicts["false"]["unlabelled"] == f'"would watch {names["unlabelled"]} (update)"'
        assert verdicts["false"]["disabled"] == f'"not watched: {names["disabled"]}"'
    finally:
        for name in names.values():
            _docker("rm", "-f", name, check=False)


@pytest.mark.parametrize(("labels", "label_enable", "monitor_only", "expected"), [
    ({watchtower_double.ENABLE: "True"}, True, False, "update"),     # Go ParseBool spellings
    ({watchtower_double.ENABLE: "yes"}, True, False, None),          # not a Go bool: not enabled
    ({watchtower_double.ENABLE: "yes"}, False, False, "update"),     # ...and not disabled either
    ({}, False, True, "monitor-only"),                               # the global flag
    ({watchtower_double.MONITOR_ONLY: "false"}, False, True, "update"),  # the label overrides it
])
def test_label_values_parse_as_go_booleans(labels: dict, label_enable: bool, monitor_only: bool, expected):
    assert watchtower_double.decide(labels, label_enable, monitor_only) == expected
