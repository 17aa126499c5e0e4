"""`aini up` on a fresh sandbox server (configure + deploy over SSH, Pebble certificates),
then: a no-op `aini up` (target under 20 s), the deploy phase against its floor
(`docker compose up -d --wait` of the same files run directly on the server, group by
group in the same order, from empty volumes; target ratio under 1.5). Not a test:
figures, printed and saved as JSON.

    .venv/bin/python bench/server_up.py [out.json]
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.server import server_world  # noqa: E402
from tests.harness import stack_images  # noqa: E402
from tests.harness.docker_engine import ensure_engine  # noqa: E402

ROOT = "/opt/aini/deployed"


def compose_on_server(s, group: str, *args: str):
    assert s.server is not None
    return s.server.exec("docker", "compose", "--project-name", f"aini-{group}", "--project-directory",
                         f"{ROOT}/{group}", "-f", f"{ROOT}/{group}/compose.yml", *args, check=False, timeout=900)


def all_down(s, order: list[str]) -> None:
    for group in reversed(order):  # traefik's group owns the proxy network: it goes last
        r = compose_on_server(s, group, "down", "--volumes", "--timeout", "5")
        if r.returncode != 0:
            raise SystemExit(f"down {group}: {r.stderr[-1000:]}")


def main(out: Path) -> dict:
    ensure_engine()
    images = stack_images.stack_overrides()
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="aini-bench-server-") as tmp, \
            server_world(Path(tmp), images, figures=figures) as s:
        order = [g for g in s.up_result["deployed"]["groups"]]

        t0 = time.monotonic()
        r = s.up_cli()
        figures["noop_up_seconds"] = round(time.monotonic() - t0, 2)
        if r.returncode != 0:
            raise SystemExit(f"no-op up failed: {r.stderr[-2000:]}")

        all_down(s, order)
        floor: dict = {}
        t0 = time.monotonic()
        for group in order:
            g0 = time.monotonic()
            r = compose_on_server(s, group, "up", "-d", "--wait", "--wait-timeout", "300")
            if r.returncode != 0:
                raise SystemExit(f"floor: {group} failed: {r.stderr[-2000:]}")
            floor[group] = round(time.monotonic() - g0, 1)
        figures["floor_seconds"] = round(time.monotonic() - t0, 1)
        figures["floor_groups"] = floor

        # aini's deploy of the same bundle from empty volumes (the host step is a no-op).
        all_down(s, order)
        r = s.up_cli()
        if r.returncode != 0:
            raise SystemExit(f"second deploy failed: {r.stderr[-2000:]}")
        deployed = json.loads(r.stdout)["deployed"]
        figures["deploy_seconds"] = deployed["seconds"]
        figures["deploy_groups"] = {g: v["seconds"] for g, v in deployed["groups"].items()}
        figures["ratio_deploy_to_floor"] = round(deployed["seconds"] / figures["floor_seconds"], 3)
    out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, indent=2, sort_keys=True))
    return figures


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/aini-server-up.json"))
