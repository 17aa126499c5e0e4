"""`aini status` against the whole default stack on the local target (the same module
fixture as test_local_stack.py): the real CLI process, the real Docker engine, real TLS
handshakes with Traefik and the certificates of the project's local CA.

The tests run in file order; the last one leaves every service healthy again.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from aini import catalog
from tests.e2e.stack import Stack

pytestmark = pytest.mark.sandbox

STOPPED = "meilisearch"  # LibreChat's search: no other container's health check depends on it
HEALTHY_AGAIN = 120  # seconds, bounded


def aini_status(stack: Stack, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """`aini -c <project>/aini.yml status ...` as a user runs it; returns the process and its wall time."""
    config_path = stack.project_dir / "aini.yml"
    config_path.write_text(yaml.safe_dump(stack.data, sort_keys=False))
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "aini", "-c", str(config_path), "status", *args],
                            check=False, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "AINI_DOCKER": stack.docker, "COLUMNS": "250"})
    assert "Traceback" not in result.stderr, result.stderr
    return result, time.monotonic() - start


def rows_of(result: subprocess.CompletedProcess) -> dict[str, dict]:
    data = json.loads(result.stdout)
    return {row["service"]: row for row in data["services"]}


def test_status_of_the_healthy_stack(stack: Stack, figures):
    config = stack.config
    result, seconds = aini_status(stack, "--json")
    figures({"status_seconds": round(seconds, 2)})
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["project"] == config.project
    rows = rows_of(result)
    enabled = catalog.enabled(config)
    assert list(rows) == [s.name for s in enabled]  # every enabled service, in deploy order, nothing else
    for spec in enabled:
        row = rows[spec.name]
        assert row["ok"] and row["state"] == "running", row
        assert row["health"] == ("healthy" if spec.health.test else row["health"]), row
        if spec.route:
            assert row["url"] == f"https://{stack.host(spec.name)}:{stack.https_port}/"
            assert row["cert_issuer"] == f"AINI local CA for {config.domain}", row
            assert row["cert_days_left"] > 0, row
        else:
            assert row["url"] is None and row["cert_issuer"] is None

    table, _ = aini_status(stack)
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"All {len(enabled)} services healthy" in table.stdout


def test_a_stopped_service_fails_status_naming_it_then_recovers(stack: Stack):
    container = catalog.by_name(STOPPED).container
    assert STOPPED in {s.name for s in catalog.enabled(stack.config)}
    stack.docker_cmd("stop", "--time", "10", container, timeout=60)
    try:
        result, _ = aini_status(stack, "--json")
        assert result.returncode == 1, result.stdout + result.stderr
        rows = rows_of(result)
        assert {name for name, row in rows.items() if not row["ok"]} == {STOPPED}
        assert rows[STOPPED]["state"] == "exited" and rows[STOPPED]["reason"].startswith("exited")
        table, _ = aini_status(stack)
        assert table.returncode == 1 and f"not healthy: {STOPPED}" in table.stdout
    finally:
        stack.docker_cmd("start", container, timeout=60)
        deadline = time.monotonic() + HEALTHY_AGAIN
        health = ""
        while time.monotonic() < deadline:
            health = stack.docker_cmd("inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                                      container, check=False).strip()
            if health == "healthy":
                break
            time.sleep(1)
        assert health == "healthy", f"{container} not healthy again within {HEALTHY_AGAIN}s ({health})"
    result, _ = aini_status(stack, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
