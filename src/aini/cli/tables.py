"""The Rich tables of `aini status` and `aini plan` (data in, text out)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def euros(gross: str) -> str:
    return f"€{Decimal(gross).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"


def status_table(report, console: Console) -> None:
    table = Table(title=f"Project '{report.project}' at {report.checked_at:%Y-%m-%d %H:%M:%S} UTC",
                  title_justify="left")
    table.add_column("service", no_wrap=True)
    table.add_column("group")
    table.add_column("state")
    table.add_column("health")
    table.add_column("restarts", justify="right")
    table.add_column("url", overflow="fold")
    table.add_column("certificate", overflow="fold")
    table.add_column("status", overflow="fold")
    backups = any(s.backup for s in report.services)
    if backups:
        table.add_column("backup", overflow="fold")
    for s in report.services:
        if s.cert_days_left is not None:
            cert = f"{s.cert_days_left} days ({escape(s.cert_issuer or '?')})"
        else:
            cert = "-"
        verdict = "[green]ok[/green]" if s.ok else "[red]FAIL[/red]"
        status = f"{verdict} {escape(s.reason)}" if s.reason else verdict
        state_style = "green" if s.state == "running" else "red"
        table.add_row(
            escape(s.service), escape(s.group), f"[{state_style}]{escape(s.state)}[/{state_style}]",
            escape(s.health or "-"), "-" if s.restarts is None else str(s.restarts), escape(s.url or "-"),
            cert, status, *([escape(s.backup or "-")] if backups else []),
        )
    console.print(table)
    failing = report.failing
    if failing:
        names = ", ".join(s.service for s in failing)
        console.print(f"[red]{len(failing)} of {len(report.services)} services not healthy: {escape(names)}[/red]")
    else:
        console.print(f"[green]All {len(report.services)} services healthy[/green] "
                      f"(checked in {report.seconds:.1f} s).")


def plan_tables(result, infra, diff, preview, hetzner: bool, console: Console) -> None:
    """`aini plan` for a terminal: services, secret names, memory, and what --deployed or a
    Hetzner token add."""
    services = Table(title=f"Services on target '{result.target}'", title_justify="left")
    for column in ("service", "image", "url", "MiB res/max"):
        services.add_column(column, overflow="fold")
    for row in result.services:
        url = (row.url or "-") + (" (admin)" if row.admin else "")
        image = row.image.removeprefix("docker.io/").removeprefix("library/")
        services.add_row(row.name, image, url, f"{row.mem_reservation}/{row.mem_limit}")
    console.print(services)
    secrets = Table(title="Secrets (names only)", title_justify="left")
    secrets.add_column("name")
    secrets.add_column("kind")
    secrets.add_column("state")
    for s in result.secrets:
        secrets.add_row(s.name, s.kind, s.state)
    console.print(secrets)
    b = result.budget
    if b.ram_mib:
        console.print(
            f"Memory: {b.reserved_mib} MiB reserved (incl. host) of {b.ram_mib} MiB on {b.server_type}; "
            f"headroom {b.headroom_mib} MiB."
        )
    else:
        console.print(f"Memory: {b.reserved_mib} MiB reserved (incl. host).")
    if preview is not None:
        console.print("What aini up would do where the stack runs:")
        for line in preview.lines():
            console.print(f"  {escape(line)}", highlight=False)
    if diff is not None:
        groups = Table(title="Against the last deploy (Consul's record)", title_justify="left")
        groups.add_column("group")
        groups.add_column("state")
        for group, state in diff:
            groups.add_row(group, state)
        console.print(groups)
    if infra:
        changes = Table(title=f"Hetzner Cloud ({infra.server_type} in {infra.location})", title_justify="left")
        for column in ("action", "resource", "name", "detail"):
            changes.add_column(column)
        for change in infra.changes:
            changes.add_row(change.action, change.kind, change.name, change.detail)
        console.print(changes)
        if infra.dns_records:
            console.print(f"DNS: A/AAAA for {', '.join(infra.dns_records)}")
        console.print(f"Price: {euros(infra.monthly_gross)} per month for the server (incl. VAT, from the Hetzner API).")
    elif hetzner:
        console.print("Cloud changes and price: set HCLOUD_TOKEN to read them from the Hetzner API.")
    for warning in result.warnings:
        console.print(f"warning: {warning}", style="yellow")
