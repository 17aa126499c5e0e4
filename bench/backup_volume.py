"""A synthetic Nextcloud data volume (AINI_BENCH_VOLUME_MIB, default 1024 MiB, in files of 4 KiB
to 64 MiB of random bytes) backed up and restored by the commands aini runs, against raw
restic on the same bytes. The real restic 0.18 (tests/harness stack-restic image), on this
machine's engine, repositories in temporary directories.

Figures (ratios, because this machine is shared and noisy):
- full backup: aini's volume snapshot (restic.backup_volumes_cmd: tags, --json, the volume
  mounted read-only) against a bare `restic backup` of the same volume into a fresh repository;
- incremental backup with nothing changed: everything `aini backup` runs against the repository
  for one volume-only service (the probe, the listing, the snapshot, the run's manifest, the
  retention's listing) against one bare `restic backup` of the same paths into the same
  repository (the floor). Target: at most 10 s and 1.5x the floor;
- incremental backup with nothing changed, stack-shaped: the same, for every item the default
  aini.yml backs up (backup.scope: each service's volumes as small synthetic volumes, each dump
  as a fixed stream from a throwaway container, so the same number of snapshots as a real
  `aini backup`), against the floor of bare restic runs of those same volumes and streams;
- restore: aini's restore_volumes_cmd into an emptied volume against a bare `restic restore`
  into another, both checked byte for byte against the original (sha256 of every file).
Writes bench/results/backup_volume.json."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aini.backup import plan, runner  # noqa: E402
from aini.catalog.model import Backup  # noqa: E402
from aini.docker import restic  # noqa: E402
from aini.docker.cmd import Cmd, Tools  # noqa: E402
from aini.sites.local import LocalSite  # noqa: E402
from tests.harness import stack_images  # noqa: E402
from tests.harness.docker_engine import ensure_engine  # noqa: E402

MIB = int(os.environ.get("AINI_BENCH_VOLUME_MIB", "1024"))
TOOLS = Tools(("docker",), ())
# Sizes in KiB, cycled until MIB is reached: many small files (photos' thumbnails, documents)
# and a few large ones (videos), like a Nextcloud data directory.
SIZES_KIB = (4, 16, 64, 256, 1024, 4096, 4, 16, 64, 65536)


def run(site: LocalSite, cmd: Cmd) -> str:
    r = site.run(cmd)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd.argv[:8])} failed: {r.stderr[-500:]}")
    return r.stdout


def timed(site: LocalSite, *cmds: Cmd) -> float:
    start = time.perf_counter()
    for cmd in cmds:
        run(site, cmd)
    return time.perf_counter() - start


def in_volume(image: str, volume: str, script: str) -> Cmd:
    return Cmd(("docker", "run", "--rm", "-v", f"{volume}:/v", "--entrypoint", "sh", image, "-c", script), 1800)


def fill_script() -> str:
    lines, total, i = [], 0, 0
    while total < MIB * 1024:
        size = SIZES_KIB[i % len(SIZES_KIB)]
        lines.append(f"head -c {size}K /dev/urandom > /v/data/u{i % 7}/f{i}")
        total, i = total + size, i + 1
    return "mkdir -p " + " ".join(f"/v/data/u{k}" for k in range(7)) + " && " + " && ".join(lines)


SUMS = "cd /v && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum"


def repository(site: LocalSite, image: str, name: str) -> restic.Repository:
    location = Path(tempfile.mkdtemp(prefix=f"aini-bench-{name}-"))
    site.write(f"{name}.env", restic.env_file({"RESTIC_REPOSITORY": str(location), "RESTIC_PASSWORD": "bench"}))
    repo = restic.Repository(image, str(site.root / f"{name}.env"), host="bench", path=str(location))
    run(site, restic.init_cmd(TOOLS, repo))
    return repo


def bare(repo: restic.Repository, *args: str, volume: str, read_only: bool = True) -> Cmd:
    """restic as anyone would run it: the volume where aini mounts it, the same host name (so
    an incremental run finds its parent), no tags, no JSON."""
    return restic.restic(TOOLS, repo, *args, mounts=[(volume, f"{restic.DATA_ROOT}/nextcloud/{volume}", read_only)])


STREAM = "seq 1 40000"  # the same bytes each time: nothing changed


def stack_shaped(site: LocalSite, image: str, tag: str) -> dict:
    """The nothing-changed run of a whole default stack's backup (see the module docstring)."""
    import dataclasses

    from aini.backup import scope  # noqa: E402
    from tests.unit.conftest import config_of  # noqa: E402

    made_volumes, made_containers = [], []
    items, floor_cmds = [], []
    repo = repository(site, image, "stack")
    try:
        for item in scope.items(config_of(backup={"repository": "/unused"})):
            volumes = tuple(f"aini-bench-{tag}-{v}" for v in item.volumes)
            for v in volumes:
                run(site, in_volume(image, v, "mkdir -p /v/d && head -c 256K /dev/urandom > /v/d/f"))
                made_volumes.append(v)
            container = f"aini-bench-{tag}-{item.service}"
            b = item.backup
            if b.dump:
                run(site, Cmd(("docker", "run", "-d", "--name", container, "--entrypoint", "sleep", image,
                               "infinity"), 120))
                made_containers.append(container)
            bench_backup = dataclasses.replace(b, dump=STREAM if b.dump else None, restore="cat" if b.dump else None,
                                               before=None, after=None, stop=False, token=None, carries=None,
                                               restore_foreign=None, refused_as_foreign=None, restore_token="snapshot", user="root")
            item = dataclasses.replace(item, container=container, volumes=volumes, backup=bench_backup)
            items.append(item)
            floor_cmds += [restic.restic(TOOLS, repo, "backup", "--host", "bench", f"{restic.DATA_ROOT}/{item.service}",
                                         mounts=[(v, f"{restic.DATA_ROOT}/{item.service}/{v}", True) for v in volumes])
                           ] if volumes else []
            floor_cmds += [restic.pipe_cmd(plan.in_container(TOOLS, item, STREAM),
                                           restic.restic(TOOLS, repo, "backup", "--host", "bench", "--stdin",
                                                         "--stdin-filename", str(b.dump_file), stdin=True))
                           ] if b.dump else []
        runs, floors = [], []
        for n in range(3):
            start = time.perf_counter()
            run(site, restic.probe_cmd(TOOLS, repo, f"aini-bench-probe-{tag}-s{n}"))
            runner.snapshot_list(site, TOOLS, repo, create=True)
            result = runner.backup_on(site, TOOLS, repo, items, lambda _: None, f"s{n}", {})
            if not result.ok:
                raise SystemExit(f"aini's backup failed: {[(s.service, s.error) for s in result.services]}")
            runner.snapshot_list(site, TOOLS, repo)  # what the retention reads
            runs.append(time.perf_counter() - start)
            floors.append(timed(site, *floor_cmds))
        snapshots = sum(len(s.snapshots) for s in result.services)
    finally:
        for c in made_containers:
            site.run(Cmd(("docker", "rm", "-f", c)))
        for v in made_volumes:
            site.run(Cmd(("docker", "volume", "rm", "-f", v)))
        site.run(Cmd(("rm", "-rf", str(repo.path))))
    aini_s, floor_s = min(runs), min(floors)
    return {"services": len(items), "snapshots": snapshots, "restic_runs_floor": len(floor_cmds),
            "aini_s": round(aini_s, 2), "floor_s": round(floor_s, 2), "aini_vs_floor": round(aini_s / floor_s, 2),
            "within_target": aini_s <= 10 and aini_s <= 1.5 * floor_s}


def main() -> None:
    ensure_engine()
    image = stack_images.restic_image()
    site = LocalSite(Path(tempfile.mkdtemp(prefix="aini-bench-site-")))
    tag = uuid.uuid4().hex[:6]
    source = f"aini-bench-source-{tag}"
    repos: list[restic.Repository] = []
    try:
        print(f"writing {MIB} MiB of random files into {source} ...", flush=True)
        run(site, in_volume(image, source, fill_script()))
        original = run(site, in_volume(image, source, SUMS)).split()[0]
        aini_repo, raw_repo = repository(site, image, "aini"), repository(site, image, "raw")
        repos += [aini_repo, raw_repo]
        item = plan.Item("nextcloud", "nextcloud", "unused", (source,), Backup(volumes=("html",)))
        raw_backup = bare(raw_repo, "backup", "--host", "bench", "/data/nextcloud", volume=source)

        full_raw = timed(site, raw_backup)
        full_aini = timed(site, restic.backup_volumes_cmd(TOOLS, aini_repo, "nextcloud", "r1", [source]))

        floor = min(timed(site, bare(aini_repo, "backup", "--host", "bench", "/data/nextcloud", volume=source))
                    for _ in range(3))
        runs = []
        for n in range(3):
            start = time.perf_counter()
            run(site, restic.probe_cmd(TOOLS, aini_repo, f"aini-bench-probe-{tag}-{n}"))
            runner.snapshot_list(site, TOOLS, aini_repo, create=True)
            result = runner.backup_on(site, TOOLS, aini_repo, [item], lambda _: None, f"r{n + 2}", {})
            if not result.ok:
                raise SystemExit(f"aini's backup failed: {result.services}")
            runner.snapshot_list(site, TOOLS, aini_repo)  # what the retention reads
            runs.append(time.perf_counter() - start)
        incremental = min(runs)

        snaps = [s for s in runner.snapshot_list(site, TOOLS, aini_repo) if s.service == "nextcloud"]
        print("the same, stack-shaped ...", flush=True)
        stack = stack_shaped(site, image, tag)
        run(site, in_volume(image, source, "rm -rf /v/data"))
        restore_aini = timed(site, *plan.restore_cmds(TOOLS, aini_repo, item, snaps[-1:]))
        aini_back = run(site, in_volume(image, source, SUMS)).split()[0]
        run(site, in_volume(image, source, "rm -rf /v/data"))
        restore_raw = timed(site, bare(raw_repo, "restore", "latest", "--host", "bench", "--target", "/",
                                       volume=source, read_only=False))
        raw_back = run(site, in_volume(image, source, SUMS)).split()[0]
        if not original == aini_back == raw_back:
            raise SystemExit(f"a restore differs from the original: {original} {aini_back} {raw_back}")
    finally:
        site.run(Cmd(("docker", "volume", "rm", "-f", source)))
        for repo in repos:
            site.run(Cmd(("rm", "-rf", str(repo.path))))
        site.run(Cmd(("rm", "-rf", str(site.root))))
    result = {
        "mib": MIB,
        "sha256_of_every_file": original[:16],
        "full_backup": {"aini_mib_s": round(MIB / full_aini, 1), "raw_mib_s": round(MIB / full_raw, 1),
                        "aini_vs_raw": round(full_aini / full_raw, 2)},
        "incremental_nothing_changed": {"aini_s": round(incremental, 2), "floor_s": round(floor, 2),
                                        "aini_vs_floor": round(incremental / floor, 2),
                                        "within_target": incremental <= 10 and incremental <= 1.5 * floor},
        "incremental_nothing_changed_stack_shaped": stack,
        "restore": {"aini_mib_s": round(MIB / restore_aini, 1), "raw_mib_s": round(MIB / restore_raw, 1),
                    "aini_vs_raw": round(restore_aini / restore_raw, 2)},
    }
    print(f"full backup of {MIB} MiB: aini {result['full_backup']['aini_mib_s']} MiB/s, raw restic "
          f"{result['full_backup']['raw_mib_s']} MiB/s ({result['full_backup']['aini_vs_raw']}x the time)")
    inc = result["incremental_nothing_changed"]
    print(f"nothing changed: aini's whole run {inc['aini_s']} s, one bare restic backup {inc['floor_s']} s "
          f"({inc['aini_vs_floor']}x; target <= 10 s and <= 1.5x: {'met' if inc['within_target'] else 'NOT met'})")
    print(f"nothing changed, stack-shaped ({stack['services']} services, {stack['snapshots']} snapshots): aini's "
          f"whole run {stack['aini_s']} s, {stack['restic_runs_floor']} bare restic backups {stack['floor_s']} s "
          f"({stack['aini_vs_floor']}x; target <= 10 s and <= 1.5x: {'met' if stack['within_target'] else 'NOT met'})")
    print(f"restore: aini {result['restore']['aini_mib_s']} MiB/s, raw restic {result['restore']['raw_mib_s']} MiB/s "
          f"({result['restore']['aini_vs_raw']}x the time); both equal to the original, file by file")
    out = Path(__file__).parent / "results" / "backup_volume.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
