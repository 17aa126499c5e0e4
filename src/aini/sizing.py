"""Memory budget: do the enabled services fit the server?

Reservations must fit in RAM beside the host's own needs; limits may exceed RAM (the swap
file absorbs peaks) but not RAM + swap. Prices are never known here: they come from the
Hetzner API at plan time. Memory per type is a hardware fact, used when offline.
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog.model import ServiceSpec

HOST_RESERVE_MIB = 768  # kernel, systemd, sshd, dockerd, page cache headroom
# RAM in GB of Hetzner's current server types (after the Oct 2025 renaming).
SERVER_MEMORY_GB = {
    "cx23": 4, "cx33": 8, "cx43": 16, "cx53": 32,
    "cpx12": 2, "cpx22": 4, "cpx32": 8, "cpx42": 16, "cpx52": 24, "cpx62": 32,
    "cax11": 4, "cax21": 8, "cax31": 16, "cax41": 32,
    "ccx13": 8, "ccx23": 16, "ccx33": 32, "ccx43": 64, "ccx53": 128, "ccx63": 192,
}  # fmt: skip


def swap_mib(ram_mib: int) -> int:
    """The swap file the host role creates: half the RAM, 2-8 GiB (OnlyOffice wants 2 GiB)."""
    return max(2048, min(8192, ram_mib // 2))


@dataclass(frozen=True)
class Budget:
    server_type: str | None
    ram_mib: int | None
    reserved_mib: int  # services' reservations + the host's reserve
    limits_mib: int

    @property
    def fits(self) -> bool:
        return self.ram_mib is None or self.reserved_mib <= self.ram_mib

    @property
    def headroom_mib(self) -> int | None:
        return None if self.ram_mib is None else self.ram_mib - self.reserved_mib


def budget(specs: list[ServiceSpec], server_type: str | None) -> Budget:
    ram = SERVER_MEMORY_GB.get(server_type or "")
    return Budget(
        server_type=server_type,
        ram_mib=ram * 1024 if ram else None,
        reserved_mib=HOST_RESERVE_MIB + sum(s.mem_reservation for s in specs),
        limits_mib=HOST_RESERVE_MIB + sum(s.mem_limit for s in specs),
    )


def smallest_fitting(specs: list[ServiceSpec], family: str) -> str | None:
    need = budget(specs, None).reserved_mib
    candidates = sorted((gb, t) for t, gb in SERVER_MEMORY_GB.items() if t.rstrip("0123456789") == family)
    return next((t for gb, t in candidates if gb * 1024 >= need), None)
