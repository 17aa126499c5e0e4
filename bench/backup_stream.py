"""A dump streamed into restic and back out, as `aini backup` and `aini restore` run it: the
commands of aini.backup.plan / aini.docker.restic on this machine's engine, the real restic
0.18 (tests/harness stack-restic image), a repository in a temporary directory.

Prints MiB/s of `docker exec ... | restic backup --stdin` and of `restic dump | docker exec -i`,
each as a ratio to the same bytes through `docker exec ... | cat` (the transport's floor on
this machine); how much this Python process grew (the bytes pass through a pipe on the site,
never through aini), and the peak memory of restic, the docker CLIs and bash meanwhile (none
of them holds the dump: their peaks do not grow with its size). Writes bench/results/backup_stream.json.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aini.docker import restic  # noqa: E402
from aini.docker.cmd import Cmd, Tools  # noqa: E402
from aini.sites.local import LocalSite  # noqa: E402
from tests.harness import stack_images  # noqa: E402
from tests.harness.docker_engine import ensure_engine  # noqa: E402

MIB = int(os.environ.get("AINI_BENCH_DUMP_MIB", "512"))
TOOLS = Tools(("docker",), ())


def timed(site: LocalSite, cmd: Cmd) -> float:
    start = time.perf_counter()
    r = site.run(cmd)
    if r.returncode != 0:
        raise SystemExit(f"{cmd.argv[:6]} failed: {r.stderr[-500:]}")
    return time.perf_counter() - start


def rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


class Peaks:
    """Peak resident memory per program name on this machine (`ps` every 0.2 s) while the
    `with` block runs: restic in its container, the docker CLIs, dockerd."""

    def __init__(self) -> None:
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eo", "rss=,comm="], capture_output=True, text=True).stdout
            for line in out.splitlines():
                rss, _, comm = line.strip().partition(" ")
                if rss.isdigit():
                    self.peak[comm.strip()] = max(self.peak.get(comm.strip(), 0.0), int(rss) / 1024)
            self._stop.wait(0.2)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(image: str, producer: str) -> dict:
    """The three pipes, in a process of their own: its peak memory and its children's are
    those of the streaming alone (not of the image build before it)."""
    site = LocalSite(Path(tempfile.mkdtemp(prefix="aini-bench-site-")))
    repo_dir = Path(tempfile.mkdtemp(prefix="aini-bench-repo-"))
    site.write("restic.env", restic.env_file({"RESTIC_REPOSITORY": str(repo_dir), "RESTIC_PASSWORD": "bench"}))
    repo = restic.Repository(image, str(site.root / "restic.env"), host="bench", path=str(repo_dir))
    try:
        timed(site, restic.init_cmd(TOOLS, repo))
        dump = Cmd(("docker", "exec", producer, "cat", "/dump"), 600)
        floor = timed(site, restic.pipe_cmd(dump, Cmd(("cat",))))
        own_before = rss_mib(resource.RUSAGE_SELF)
        with Peaks() as peaks:
            backup = timed(site, restic.pipe_cmd(dump, restic.backup_stdin_cmd(TOOLS, repo, "bench", "r1",
                                                                               "dump.bin")))
            (snap,) = restic.parse_snapshots(site.run(restic.snapshots_cmd(TOOLS, repo)).stdout)
            load = Cmd(("docker", "exec", "-i", producer, "sh", "-c", "cat > /restored && cmp /dump /restored"), 600)
            restore = timed(site, restic.pipe_cmd(restic.dump_cmd(TOOLS, repo, snap.id, "dump.bin"), load))
        own_after = rss_mib(resource.RUSAGE_SELF)
    finally:
        site.run(Cmd(("rm", "-rf", str(repo_dir), str(site.root))))
    return {"floor": floor, "backup": backup, "restore": restore, "own_growth": own_after - own_before,
            "peaks": {name: peaks.peak.get(name, 0.0) for name in ("restic", "docker", "bash")}}


def main() -> None:
    ensure_engine()
    image = stack_images.restic_image()
    producer = f"aini-bench-dump-{uuid.uuid4().hex[:6]}"
    run = LocalSite(Path(tempfile.gettempdir())).run
    run(Cmd(("docker", "run", "-d", "--name", producer, "--entrypoint", "sleep", image, "3600")))
    try:
        # A file in the container, so every pipe reads the same bytes (urandom: restic cannot dedupe it).
        r = run(Cmd(("docker", "exec", producer, "sh", "-c", f"head -c {MIB}M /dev/urandom > /dump"), 600))
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        child = subprocess.run([sys.executable, __file__, "--measure", image, producer], capture_output=True,
                               text=True, timeout=1800)
        if child.returncode != 0:
            raise SystemExit(child.stdout + child.stderr)
        m = json.loads(child.stdout)
    finally:
        run(Cmd(("docker", "rm", "-f", producer)))
    result = {
        "mib": MIB,
        "floor_mib_s": round(MIB / m["floor"], 1),
        "backup_mib_s": round(MIB / m["backup"], 1),
        "restore_mib_s": round(MIB / m["restore"], 1),
        "backup_vs_floor": round(m["floor"] / m["backup"], 2),
        "restore_vs_floor": round(m["floor"] / m["restore"], 2),
        "aini_rss_growth_mib": round(m["own_growth"], 1),
        "peak_rss_mib": {name: round(v, 1) for name, v in m["peaks"].items()},
    }
    print(f"{MIB} MiB dump: docker exec | cat {result['floor_mib_s']} MiB/s; into restic {result['backup_mib_s']} MiB/s "
          f"({result['backup_vs_floor']}x the floor); back out and compared {result['restore_mib_s']} MiB/s "
          f"({result['restore_vs_floor']}x)")
    print(f"aini's own memory grew {result['aini_rss_growth_mib']} MiB while {MIB} MiB went through; peak RSS "
          + ", ".join(f"{k} {v} MiB" for k, v in result["peak_rss_mib"].items()))
    out = Path(__file__).parent / "results" / "backup_stream.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    else:
        main()
