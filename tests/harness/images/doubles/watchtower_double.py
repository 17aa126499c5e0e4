#!/usr/bin/env python3
"""Watchtower TEST DOUBLE (stands in for docker.io/nickfedor/watchtower 1.22.3). Never shipped.

Upstream facts (nicholas-fedor/watchtower):
- internal/scheduling/scheduling.go: the schedule is trimmed of wrapping quotes
  (strings.Trim(spec, `"'`), PR #1686) and parsed by robfig/cron/v3; a parse error is
  returned as "failed to schedule updates: <err>", which cmd/root.go logs as
  "Scheduled upgrades failed" and turns into exit code 1.
- Parser options: PR #1208 (2026-01) built the scheduler with cron.WithSeconds() (exactly 6
  fields); the stored head uses SecondOptional (5 or 6). Which one 1.22.3 carries is not
  verified here, so the double takes the stricter: exactly 6 fields, seconds first.
  Messages are robfig/cron v3 parser.go's ("expected exactly 6 fields, found 5: [...]",
  "failed to parse int from ...", "end of range (..) above maximum (..): ...").
- pkg/filters: with --label-enable (WATCHTOWER_LABEL_ENABLE) only containers whose
  com.centurylinklabs.watchtower.enable label parses true are watched; without it, a label
  parsing false excludes. com.centurylinklabs.watchtower.monitor-only, when it parses,
  overrides WATCHTOWER_MONITOR_ONLY. Values are Go strconv.ParseBool values.
- pkg/container/client.go: a failed ping at start is not fatal ("Ping failed during
  initialization. Will negotiate on first API call"), and the start-up listing of
  containers only warns on failure ("continuing anyway"): an unreachable Docker API does
  not stop Watchtower, so the double does not refuse it either.
The image is FROM scratch: no shell, no tools; the catalog has no health check for it.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import sys
import time
from urllib.parse import urlsplit

ENABLE = "com.centurylinklabs.watchtower.enable"
MONITOR_ONLY = "com.centurylinklabs.watchtower.monitor-only"
TRUE = {"1", "t", "T", "TRUE", "true", "True"}
FALSE = {"0", "f", "F", "FALSE", "false", "False"}
# robfig/cron v3 bounds and names (spec.go).
BOUNDS = [(0, 59, None), (0, 59, None), (0, 23, None), (1, 31, None),
          (1, 12, {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}),
          (0, 6, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())})]
DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
GO_DURATION = re.compile(r"^([0-9]*(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$")


def log(level: str, message: str) -> None:
    print(f'time="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}" level={level} msg="{message}"', flush=True)


def parse_bool(value: str | None) -> bool | None:
    return True if value in TRUE else False if value in FALSE else None


class CronError(ValueError):
    pass


def _int(expr: str) -> int:
    try:
        num = int(expr, 10) if re.fullmatch(r"[+-]?[0-9]+", expr) else int("x")
    except ValueError:
        raise CronError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax') from None
    if num < 0:
        raise CronError(f"negative number ({num}) not allowed: {expr}")
    return num


def _range(expr: str, low: int, high: int, names: dict | None) -> None:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    if low_high[0] in ("*", "?"):
        start, end = low, high
    else:
        start = names[low_high[0].lower()] if names and low_high[0].lower() in names else _int(low_high[0])
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = names[low_high[1].lower()] if names and low_high[1].lower() in names else _int(low_high[1])
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 2:
        step = _int(range_and_step[1])
        if len(low_high) == 1:
            end = high
    elif len(range_and_step) > 2:
        raise CronError(f"too many slashes: {expr}")
    else:
        step = 1
    if start < low:
        raise CronError(f"beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise CronError(f"end of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")


def parse_schedule(spec: str) -> list[str]:
    """robfig/cron v3 Parser.Parse with Second|Minute|Hour|Dom|Month|Dow|Descriptor."""
    spec = spec.strip("\"'")
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        spec = spec[spec.index(" ") + 1:].strip() if " " in spec else ""
    if spec.startswith("@"):
        if spec in DESCRIPTORS or (spec.startswith("@every ") and GO_DURATION.match(spec[7:])):
            return [spec]
        if spec.startswith("@every "):
            raise CronError(f'failed to parse duration {spec}: time: invalid duration "{spec[7:]}"')
        raise CronError(f"unrecognized descriptor: {spec}")
    fields = spec.split()
    if len(fields) != 6:
        raise CronError(f"expected exactly 6 fields, found {len(fields)}: [{' '.join(fields)}]")
    for field, (low, high, names) in zip(fields, BOUNDS):
        for part in field.split(","):
            _range(part, low, high, names)
    return fields


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def docker_get(path: str) -> object:
    """DOCKER_HOST as the Docker client reads it (unix:// or tcp://), default the socket."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    url = urlsplit(host)
    conn = _Unix(url.path) if url.scheme == "unix" else http.client.HTTPConnection(url.hostname or "", url.port or 2375, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"Docker API {path}: HTTP {response.status}: {body[:200]!r}")
        return json.loads(body) if body[:1] in (b"[", b"{") else body.decode()
    finally:
        conn.close()


def decide(labels: dict, label_enable: bool, monitor_only: bool) -> str | None:
    """None: not watched; else "update" or "monitor-only"."""
    enabled = parse_bool(labels.get(ENABLE))
    if label_enable and enabled is not True:
        return None
    if enabled is False:
        return None
    monitor = parse_bool(labels.get(MONITOR_ONLY))
    return "monitor-only" if (monitor if monitor is not None else monitor_only) else "update"


def report(label_enable: bool, monitor_only: bool) -> None:
    try:
        docker_get("/_ping")
    except OSError as exc:
        log("warning", f"Ping failed during initialization. Will negotiate on first API call error={exc}")
    try:
        containers = docker_get("/containers/json")
    except (OSError, ValueError) as exc:
        log("warning", f"Failed to list containers, continuing anyway error={exc}")
        return
    for c in containers if isinstance(containers, list) else []:
        name = (c.get("Names") or ["?"])[0].lstrip("/")
        verdict = decide(c.get("Labels") or {}, label_enable, monitor_only)
        log("info", f"would watch {name} ({verdict})" if verdict else f"not watched: {name}")


def start() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    env = os.environ
    log("info", "Watchtower 1.22.3 (AINI test double)")
    label_enable = parse_bool(env.get("WATCHTOWER_LABEL_ENABLE", "false")) is True
    monitor_only = parse_bool(env.get("WATCHTOWER_MONITOR_ONLY", "false")) is True
    log("info", "Only checking containers using enable label" if label_enable
        else "Checking all containers (except explicitly disabled with label)")
    report(label_enable, monitor_only)
    schedule = env.get("WATCHTOWER_SCHEDULE", "")
    if schedule:
        try:
            parse_schedule(schedule)
        except CronError as exc:
            log("error", f"Scheduled upgrades failed error=\"failed to schedule updates: {exc}\"")
            sys.exit(1)
        log("info", f"Schedule accepted: {schedule.strip(chr(34) + chr(39))}")
    while True:
        time.sleep(3600)


def answer(method: str, path: str, headers: object, body: bytes) -> None:
    """Serves no HTTP: start() never returns."""
    return None
