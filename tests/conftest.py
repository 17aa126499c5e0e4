"""Suite-wide reporting: the `upstream` tests (real images from Docker Hub) are skipped on
machines that cannot reach it; a skip is not a pass, so the run ends with one line saying
how many did not run and why."""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest's hook signature
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "upstream" in getattr(r, "keywords", {})]
    if not skipped:
        return
    reasons = sorted({str(r.longrepr[2]).removeprefix("Skipped: ") if isinstance(r.longrepr, tuple) else str(r.longrepr)
                      for r in skipped})
    terminalreporter.write_line(
        f"upstream: {len(skipped)} tests did not run (not counted as passing): {' | '.join(reasons)}")
