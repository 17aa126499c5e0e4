"""Deploy wall time of aini's deploy step versus its floor: `docker compose up -d --wait`
of the same files, group by group in the same order, run directly. Both from empty
volumes with every image present. Also the no-op re-deploy and `aini status --json` of
the healthy stack. Not a test: figures, printed and saved as JSON.

    .venv/bin/python bench/deploy_floor.py [out.json]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from aini.deploy import record  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.stack import Stack, foreign_resources, free_port, stack_config  # noqa: E402
from tests.harness import stack_images  # noqa: E402
from tests.harness.docker_engine import ensure_engine  # noqa: E402


def status_seconds(stack: Stack, docker: str) -> float:
    """`aini status --json` of the healthy stack, as a user runs it (the e2e test checks its answer)."""
    config_path = stack.project_dir / "aini.yml"
    config_path.write_text(yaml.safe_dump(stack.data, sort_keys=False))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "aini", "-c", str(config_path), "status", "--json"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "AINI_DOCKER": docker})
    seconds = round(time.monotonic() - t0, 2)
    if r.returncode != 0:
        raise SystemExit(f"aini status failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    return seconds


def main(out: Path) -> dict:
    docker = ensure_engine()
    if foreign_resources(docker):
        sys.exit(f"another AINI stack is on this engine: {foreign_resources(docker)}")
    # The e2e tests' stack has the same project and names: tearing it down here would pull it
    # from under a test session running beside the bench.
    running = subprocess.run([docker, "ps", "-a", "-q", "--filter", "label=aini.project=e2e"],
                             capture_output=True, text=True, timeout=60).stdout.split()
    if running:
        sys.exit(f"an e2e stack is on this engine ({len(running)} containers labelled aini.project=e2e): "
                 "wait for its test session to end, or remove it, then run the bench again")
    overrides = stack_images.stack_overrides()
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="aini-bench-") as tmp:
        stack = Stack(Path(tmp), stack_config(overrides), free_port(), free_port(), docker)
        stack.teardown()
        try:
            t0 = time.monotonic()
            result = stack.up()
            figures["aini_seconds"] = round(time.monotonic() - t0, 1)
            figures["aini_groups"] = {g.group: round(g.seconds, 1) for g in result.groups}

            t0 = time.monotonic()
            stack.up()
            figures["aini_noop_seconds"] = round(time.monotonic() - t0, 2)
            figures["status_seconds"] = status_seconds(stack, docker)

            # The floor: the same files, from empty volumes, straight through compose.
            order = json.loads((stack.deploy_dir / record.DEPLOYED_MANIFEST).read_text())["order"]
            for group in reversed(order):
                stack.compose(group, "down", "--volumes", "--timeout", "5")
            floor: dict = {}
            t0 = time.monotonic()
            for group in order:
                g0 = time.monotonic()
                r = stack.compose(group, "up", "-d", "--wait", "--wait-timeout", "300")
                if r.returncode != 0:
                    raise SystemExit(f"floor: {group} failed: {r.stderr[-2000:]}")
                floor[group] = round(time.monotonic() - g0, 1)
            figures["floor_seconds"] = round(time.monotonic() - t0, 1)
            figures["floor_groups"] = floor
            t0 = time.monotonic()
            for group in order:
                subprocess.run(stack.compose(group, "up", "-d", "--wait").args, capture_output=True)
            figures["floor_noop_seconds"] = round(time.monotonic() - t0, 2)
            figures["ratio"] = round(figures["aini_seconds"] / figures["floor_seconds"], 3)
        finally:
            stack.teardown()
    out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, indent=2, sort_keys=True))
    return figures


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/aini-deploy-floor.json"))
