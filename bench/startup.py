"""Whole-process timings of `aini --help` and `aini render` of the full default stack.

Targets on this machine: help under 0.3 s, render under 0.5 s. Prints the median of
several runs and the ratio to a bare `python -c pass` (the interpreter's own floor), and
writes bench/results/startup.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 15
AINI = [sys.executable, "-m", "aini"]


def median_seconds(cmd: list[str], cwd: Path) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        subprocess.run([*AINI, "init", "--non-interactive", "--domain", "example.com", "--email", "a@example.com"], cwd=cwd, check=True, capture_output=True)
        floor = median_seconds([sys.executable, "-c", "pass"], cwd)
        help_s = median_seconds([*AINI, "--help"], cwd)
        render_s = median_seconds([*AINI, "render", "--out", "bundle"], cwd)
    result = {
        "python_floor_s": round(floor, 4),
        "help_s": round(help_s, 4),
        "render_s": round(render_s, 4),
        "help_over_floor": round(help_s / floor, 2),
        "render_over_floor": round(render_s / floor, 2),
        "targets": {"help_s": 0.3, "render_s": 0.5},
    }
    for key, value in result.items():
        print(f"{key:>18}: {value}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
