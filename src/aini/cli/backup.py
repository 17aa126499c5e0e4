"""`aini backup [list]` and `aini restore`: thin commands over aini.ops.backup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, err, load, run

backup_app = typer.Typer(help="Back up the services' data with restic to backup.repository; list the snapshots.",
                         invoke_without_command=True)
app.add_typer(backup_app, name="backup")

Only = Annotated[Optional[list[str]], typer.Option("--only", metavar="SERVICE|GROUP",
                                                   help="Only this service or group (repeatable).")]


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return "-"


@backup_app.callback()
def backup_now(ctx: typer.Context, only: Only = None) -> None:
    """Back up now: each service's volumes and database dump, one restic snapshot each."""
    if ctx.invoked_subcommand is not None:
        return
    from ..ops import backup  # lazy: startup time

    def action() -> int:
        result = backup.backup(load(), only or (), say=err)
        for s in result.services:
            state = f"FAILED: {s.error}" if s.error else f"{','.join(s.snapshots)}  {_size(s.bytes)}"
            print(f"{s.service:<15} {s.seconds:6.1f}s  {state}")
        for group, seconds in result.windows.items():
            print(f"{group}: stopped or in maintenance mode for {seconds:.1f}s")
        for service, why in result.not_saved.items():
            print(f"{service:<15} not backed up: {why}")
        print(f"run {result.run}: {'ok' if result.ok else 'FAILED'}")
        return 0 if result.ok else 1

    run(action)


@backup_app.command("list")
def backup_list(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """The project's snapshots, newest run first: run, service, snapshot, time, size."""
    from ..docker import restic  # lazy: startup time
    from ..ops import backup  # lazy: startup time

    def action() -> None:
        listed = backup.snapshots(load())
        whole = restic.complete(listed)
        snaps = sorted((s for s in listed if s.service), key=lambda s: (s.run, s.service), reverse=True)
        if as_json:
            print(json.dumps([{"run": s.run, "service": s.service, "id": s.id, "short_id": s.short_id,
                               "time": s.time.isoformat(), "bytes": s.size, "paths": list(s.paths),
                               "safety": s.safety, "complete": s.service in whole.get(s.run, ())}
                              for s in snaps], indent=2))
            return
        if not snaps:
            print("no snapshots yet (aini backup makes one)")
        for s in snaps:
            kind = "dump" if s.dump else "volumes"
            print(f"{s.run}  {s.service:<15} {s.short_id}  {s.time:%Y-%m-%d %H:%M:%S}  {kind:<7} {_size(s.size)}"
                  + ("  (safety backup before a restore)" if s.safety else "")
                  + ("" if s.service in whole.get(s.run, ()) else "  (incomplete: never restored)"))

    run(action)


@backup_app.command("check")
def backup_check(
    read_data: Annotated[Optional[int], typer.Option(metavar="PERCENT", help="Also read back and verify this "
                                                     "share of the stored data (1-100).")] = None,
) -> None:
    """Verify the repository: its structure, and with --read-data a share of its data read back."""
    from ..ops import backup  # lazy: startup time

    def action() -> None:
        backup.check(load(), read_data)
        print("the repository is intact" + (f" ({read_data}% of its data read back)" if read_data else ""))

    run(action)


@backup_app.command("drill")
def backup_drill(
    snapshot: Annotated[Optional[str], typer.Option(help="A run or snapshot id (default: the latest complete run).")
                        ] = None,
    only: Only = None,
) -> None:
    """Prove a run restores: its dumps loaded into throwaway databases and checked, its volumes
    restored into throwaway volumes and verified, then all of it removed. Exit 1 if any failed."""
    from ..ops import drill  # lazy: startup time

    def action() -> int:
        result = drill.run_drill(load(), snapshot, only or (), say=err)
        for c in result.checked:
            print(f"{c.service:<15} {c.seconds:6.1f}s  {c.kind:<7} {'ok' if c.ok else 'FAILED'}: {c.detail}")
        print(f"drill of run {result.run}: {'passed' if result.ok else 'FAILED'} in {result.seconds:.0f}s")
        return 0 if result.ok else 1

    run(action)


@app.command()
def restore(
    services: Annotated[Optional[list[str]], typer.Argument(
        metavar="[SERVICE|GROUP...]", help="What to restore (default: every service that keeps data).")] = None,
    snapshot: Annotated[Optional[str], typer.Option(help="A run or snapshot id (default: the latest complete run).")
                        ] = None,
    confirm: Annotated[Optional[str], typer.Option(help="The project name, to confirm without a prompt.")] = None,
) -> None:
    """Put services back to a backup run, after a safety backup of what they hold now."""
    from ..ops import backup  # lazy: startup time

    def action() -> None:
        done = backup.restore(load(), services or (), confirm, typer.prompt, snapshot, say=err)
        print(f"restored {', '.join(done.services)} to run {done.run} in {done.seconds:.0f}s; "
              f"what they held before is run {done.safety_run}")
        if done.renewed:
            print(f"{' and '.join(done.renewed)} came back with their own keys and tokens: run aini up to give AINI "
                  "new tokens in them (until then their scheduled backups fail)")

    run(action)


@app.command()
def recover(
    repository: Annotated[str, typer.Option(help="The backup repository (backup.repository of the lost project); "
                                                 "its credentials come from AINI_SECRET_BACKUP_*.")],
    project: Annotated[Optional[str], typer.Option(help="Which project, when the repository holds several.")] = None,
    into: Annotated[Path, typer.Option(help="The empty directory to write aini.yml and .aini/ into.")] = Path("."),
    restic_image: Annotated[Optional[str], typer.Option(help="The restic image to run, when the pinned one cannot "
                                                             "be pulled (your mirror's copy).")] = None,
) -> None:
    """Rebuild a project's aini.yml and .aini/ from its backup repository with the break-glass
    passphrase (AINI_BREAKGLASS_PASSPHRASE or a prompt): the recovery kit aini backup keeps there."""
    from ..controlplane.breakglass import Passphrase  # lazy: startup time
    from ..ops import recovery  # lazy: startup time

    def action() -> None:
        done = recovery.recover(repository, into.resolve(), project, Passphrase(), err, restic_image)
        print(f"recovered {done.project} from its kit of {done.kit_time[:19]}: {', '.join(done.files)}")
        print("next: aini backup list shows its runs; README 'Recovery' says how to bring the services back")

    run(action)
