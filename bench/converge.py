"""How long `aini up --host-only` takes on a sandbox host: a fresh converge, a no-op re-run, and the
floor those are measured against (one SSH round trip running `true`).

    .venv/bin/python bench/converge.py [--noop-runs 3] [--floor-runs 5]

Prints the figures and the ratio no-op/floor (target: the no-op run under 15 s wall) and
writes them as JSON to bench/results/ (git-ignored). Not a test: a missed target is a
figure ("MISSED"), not a failure; the exit code is 1 only when a run itself fails.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import sandbox  # noqa: E402

NOOP_TARGET_S = 15.0
AINI = [sys.executable, "-m", "aini"]


def timed(argv: list[str], cwd: Path | None = None, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started, r


def ssh_true(host: sandbox.SandboxHost, user: str) -> float:
    # A fresh connection each time (no multiplexing): handshake, auth, `true`, teardown.
    argv = ["ssh", *sandbox.SSH_OPTS, "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-i", str(host.key),
            "-p", str(host.ssh_port), f"{user}@127.0.0.1", "true"]
    seconds, r = timed(argv, timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"ssh {user}@ failed: {r.stderr}")
    return seconds


def up(project: Path) -> tuple[float, dict]:
    # The host step only: the stack's deploy has its own benches (deploy_floor, server_up).
    seconds, r = timed([*AINI, "up", "--docker-source", "debian", "--host-only", "--json"], cwd=project)
    if r.returncode != 0:
        raise SystemExit(f"aini up failed:\n{r.stderr[-3000:]}")
    return seconds, json.loads(r.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop-runs", type=int, default=3)
    parser.add_argument("--floor-runs", type=int, default=5)
    args = parser.parse_args()

    sandbox.docker_cli()
    image = sandbox.host_image()
    workdir = Path(tempfile.mkdtemp(prefix="aini-bench-"))
    key = sandbox.make_keypair(workdir / "ssh")
    (host,) = sandbox.start_hosts(1, key, image=image, prefix="aini-bench")
    try:
        project = workdir / "project"
        project.mkdir()
        (project / "aini.yml").write_text(
            "domain: example.com\nemail: admin@example.com\n"
            f"target:\n  kind: ssh\n  host: 127.0.0.1\n  port: {host.ssh_port}\n  user: root\n  ssh_key: {key}\n")
        floor_before = [ssh_true(host, "root") for _ in range(args.floor_runs)]
        fresh_s, fresh = up(project)
        noops = [up(project) for _ in range(args.noop_runs)]
        floor_after = [ssh_true(host, "aini") for _ in range(args.floor_runs)]
    finally:
        host.remove()

    if any(result["changed"] for _, result in noops):
        print("warning: a re-run changed something:", [r["changed"] for _, r in noops], file=sys.stderr)
    noop_s = statistics.median(s for s, _ in noops)
    floor_s = statistics.median(floor_after)
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version()},
        "fresh_converge_s": round(fresh_s, 2),
        "fresh_changed": fresh["changed"],
        "noop_s": round(noop_s, 2),
        "noop_runs_s": [round(s, 2) for s, _ in noops],
        "noop_changed": [r["changed"] for _, r in noops],
        "noop_ansible_s": [r["elapsed"] for _, r in noops],
        "floor_ssh_true_s": round(floor_s, 3),
        "floor_runs_s": [round(s, 3) for s in floor_after],
        "floor_as_root_before_s": round(statistics.median(floor_before), 3),
        "ratio_noop_to_floor": round(noop_s / floor_s, 1),
        "noop_target_s": NOOP_TARGET_S,
        "noop_within_target": noop_s < NOOP_TARGET_S,
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"converge-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")

    print(f"fresh converge   {results['fresh_converge_s']:7.2f} s  ({fresh['changed']} changed)")
    print(f"no-op re-run     {results['noop_s']:7.2f} s  (median of {args.noop_runs}: {results['noop_runs_s']}; "
          f"changed {results['noop_changed']})")
    print(f"floor (ssh true) {results['floor_ssh_true_s']:7.3f} s  (median of {args.floor_runs})")
    print(f"ratio no-op/floor {results['ratio_noop_to_floor']:6.1f}x   target no-op < {NOOP_TARGET_S:.0f} s: "
          f"{'met' if results['noop_within_target'] else 'MISSED'}")
    print(f"written to {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
