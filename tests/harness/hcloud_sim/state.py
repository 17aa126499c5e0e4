"""In-memory project state: resources, the action engine, locks and address pools.

Resources are stored as API-shaped dicts (what ``GET /<resource>/{id}`` returns, minus the
fields that are computed when rendering, e.g. ``locked``); keys starting with ``_`` are
private to the simulator (``_user_data``, ``_root_password``...) and never rendered.

Actions are evaluated lazily: every request calls :meth:`State.tick`, which finishes the
actions whose due time has passed, in due order, and runs their completion callbacks
(``status`` transitions, deletions...). A resource is *locked* while an action that lists
it in ``resources`` is running.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from . import catalog
from .errors import locked, not_found
from .faults import Faults


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).replace(microsecond=0).isoformat()


def public(record: Any) -> Any:
    """Deep copy without private (``_``-prefixed) keys."""
    if isinstance(record, dict):
        return {k: public(v) for k, v in record.items() if not (isinstance(k, str) and k.startswith("_"))}
    if isinstance(record, list):
        return [public(v) for v in record]
    return copy.deepcopy(record)


@dataclass
class Action:
    id: int
    command: str
    resources: list[tuple[str, int]]
    started: float
    due: float
    fail: tuple[str, str] | None = None
    on_success: Callable[[], None] | None = None
    on_error: Callable[[], None] | None = None
    status: str = "running"
    finished: float | None = None
    error: dict[str, str] | None = None
    hidden: bool = False  # e.g. actions of deleted rrsets are still readable

    def involves(self, kind: str, ident: int) -> bool:
        return (kind, ident) in self.resources


@dataclass
class Hooks:
    """Callbacks tests can set (all optional, called with the state lock held).

    ``on_server_create(server)`` gets the stored server dict right after creation and may
    mutate it, e.g. ``server["public_net"]["ipv4"]["ip"] = "127.0.0.1"`` so that the product
    reaches a sandbox host. ``server["_user_data"]`` holds the user data, ``server["_ssh_keys"]``
    the public keys. ``on_server_delete(server)`` runs when a deletion completes.
    """

    on_server_create: Callable[[dict], Any] | None = None
    on_server_delete: Callable[[dict], Any] | None = None
    on_action_finished: Callable[[Action], Any] | None = None


class State:
    def __init__(self, *, action_delay: float = 0.0, server_limit: int | None = None,
                 faults: Faults | None = None, clock: Callable[[], float] = time.time):
        self.lock = threading.RLock()
        self.clock = clock
        self.action_delay = action_delay
        self.server_limit = server_limit
        self.faults = faults or Faults()
        self.hooks = Hooks()
        self._ids = itertools.count(1000)
        self._action_ids = itertools.count(5_000_000)
        # catalogue
        self.locations = catalog.build_locations()
        self.server_types = catalog.build_server_types(self.locations)
        self.datacenters = catalog.build_datacenters(self.locations, self.server_types)
        self.images = catalog.build_images()
        # project resources
        self.servers: dict[int, dict] = {}
        self.ssh_keys: dict[int, dict] = {}
        self.firewalls: dict[int, dict] = {}
        self.volumes: dict[int, dict] = {}
        self.primary_ips: dict[int, dict] = {}
        self.networks: dict[int, dict] = {}
        self.zones: dict[int, dict] = {}
        self.rrsets: dict[int, dict[tuple[str, str], dict]] = {}  # zone id -> (name, type) -> rrset
        self.actions: dict[int, Action] = {}
        self._ipv4_pool = itertools.chain(
            *(ipaddress.ip_network(n).hosts() for n in ("203.0.113.0/24", "198.51.100.0/24",
                                                        "192.0.2.0/24", "100.64.0.0/10")))
        self._ipv6_counter = itertools.count(1)

    # ----- time & ids --------------------------------------------------------------------
    def now(self) -> float:
        return self.clock()

    def now_iso(self) -> str:
        return iso(self.now())

    def next_id(self) -> int:
        return next(self._ids)

    def allocate_ipv4(self) -> str:
        return str(next(self._ipv4_pool))

    def allocate_ipv6_net(self) -> str:
        n = next(self._ipv6_counter)
        return f"2001:db8:{n >> 16:x}:{n & 0xffff:x}::/64"

    # ----- actions -----------------------------------------------------------------------
    def new_action(self, command: str, resources: Iterable[tuple[str, int]], *,
                   on_success: Callable[[], None] | None = None,
                   on_error: Callable[[], None] | None = None,
                   after: Action | None = None, delay: float | None = None) -> Action:
        """Create a running action. ``after`` chains it behind another action (next_actions);
        its duration is ``delay`` or the configured ``action_delay``, unless a fault rule
        makes it slow or failing."""
        resources = list(resources)
        fault_delay, fail = self.faults.plan_action(command, [k for k, _ in resources])
        duration = fault_delay if fault_delay is not None else (
            self.action_delay if delay is None else delay)
        now = self.now()
        start = max(now, after.due) if after is not None else now
        action = Action(id=next(self._action_ids), command=command, resources=resources,
                        started=now, due=start + duration, fail=fail,
                        on_success=on_success, on_error=on_error)
        self.actions[action.id] = action
        return action

    def finished_action(self, command: str, resources: Iterable[tuple[str, int]]) -> Action:
        """An action that is already ``success`` (for synchronous changes)."""
        now = self.now()
        action = Action(id=next(self._action_ids), command=command, resources=list(resources),
                        started=now, due=now, status="success", finished=now)
        self.actions[action.id] = action
        return action

    def tick(self) -> None:
        """Finish every running action whose due time has passed (in due order)."""
        with self.lock:
            while True:
                now = self.now()
                due = [a for a in self.actions.values() if a.status == "running" and a.due <= now]
                if not due:
                    return
                action = min(due, key=lambda a: (a.due, a.id))
                self._finish(action, at=action.due)

    def settle(self) -> None:
        """Finish all running actions now, whatever their due time (for tests)."""
        with self.lock:
            while True:
                running = [a for a in self.actions.values() if a.status == "running"]
                if not running:
                    return
                self._finish(min(running, key=lambda a: (a.due, a.id)), at=self.now())

    def _finish(self, action: Action, at: float) -> None:
        action.finished = max(at, action.started)
        if action.fail:
            action.status = "error"
            action.error = {"code": action.fail[0], "message": action.fail[1]}
            callback = action.on_error
        else:
            action.status = "success"
            callback = action.on_success
        if callback:
            callback()
        if self.hooks.on_action_finished:
            self.hooks.on_action_finished(action)

    def render_action(self, action: Action) -> dict[str, Any]:
        if action.status == "running":
            span = max(action.due - action.started, 1e-9)
            progress = int(max(0, min(99, (self.now() - action.started) / span * 100)))
        else:
            progress = 100 if action.status == "success" else 0
        return {
            "id": action.id,
            "command": action.command,
            "status": action.status,
            "progress": progress,
            "started": iso(action.started),
            "finished": iso(action.finished) if action.finished is not None else None,
            "resources": [{"id": i, "type": k} for k, i in action.resources],
            "error": dict(action.error) if action.error else None,
        }

    def is_locked(self, kind: str, ident: int) -> bool:
        return any(a.status == "running" and a.involves(kind, ident) for a in self.actions.values())

    def check_unlocked(self, kind: str, ident: int) -> None:
        if self.is_locked(kind, ident):
            raise locked(kind, ident)

    # ----- lookups -----------------------------------------------------------------------
    def get(self, collection: dict[int, dict], ident: Any, kind: str) -> dict:
        try:
            key = int(ident)
        except (TypeError, ValueError):
            raise not_found(kind, ident) from None
        if key not in collection:
            raise not_found(kind, key)
        return collection[key]

    @staticmethod
    def by_id_or_name(collection: dict[int, dict], ident: Any) -> dict | None:
        if isinstance(ident, int) or (isinstance(ident, str) and ident.isdigit()):
            rec = collection.get(int(ident))
            if rec is not None:
                return rec
        if isinstance(ident, str):
            for rec in collection.values():
                if rec.get("name") == ident:
                    return rec
        return None

    def location_by_name(self, name: str) -> dict | None:
        return self.by_id_or_name(self.locations, name)

    def datacenter_for_location(self, location_id: int) -> dict:
        return next(dc for dc in self.datacenters.values() if dc["location"]["id"] == location_id)

    def name_taken(self, collection: dict[int, dict], name: str, exclude: int | None = None) -> bool:
        return any(r.get("name") == name and r["id"] != exclude for r in collection.values())


__all__ = ["State", "Action", "Hooks", "iso", "public"]
