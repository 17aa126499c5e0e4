"""Deploy wall time of aini's deploy step versus its floor: `docker compose up -d --wait`
of the same files, group by group in the same order, run directly. Both from empty
volumes with every image present. Not a test: figures, printed and saved as JSON.

    .venv/bin/python bench/deploy_floor.py [out.json]
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aini import deploy  # noqa: E402
from tests.e2e.stack import Stack, foreign_resources, free_port, stack_config  # noqa: E402
from tests.harness import stack_images  # noqa: E402
from tests.harness.docker_engine import ensure_engine  # noqa: E402


def main(out: Path) -> dict:
    docker = ensure_engine()
    if foreign_resources(docker):
        sys.exit(f"another AINI stack is on this engine: {foreign_resources(docker)}")
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

            # The floor: the same files, from empty volumes, straight through compose.
            order = json.loads((stack.deploy_dir / deploy.DEPLOYED_MANIFEST).read_text())["order"]
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
