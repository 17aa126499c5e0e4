"""Which services a backup covers: the enabled ones whose catalog entry has something to
save, in deploy order, as backup.plan's Items."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .. import catalog
from ..catalog import backup as backup_catalog
from ..config import AiniConfig
from ..errors import InputError
from ..render.compose import volume_name
from .plan import Item


def items(config: AiniConfig, only: Sequence[str] = ()) -> list[Item]:
    """The enabled services with something to save, in deploy order; `only`: service or
    group names (a group stands for all its members)."""
    enabled = catalog.enabled(config)
    if only:
        known = {s.name for s in enabled} | {s.group for s in enabled}
        unknown = sorted(set(only) - known)
        if unknown:
            raise InputError(f"no enabled service or group named {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
    result = []
    for spec in enabled:
        b = spec.backup
        if (b.volumes or b.dump) and (not only or spec.name in only or spec.group in only):
            result.append(Item(spec.name, spec.group, spec.container, tuple(volume_name(v) for v in b.volumes), b))
    return result


def not_saved(config: AiniConfig) -> dict[str, str]:
    """Enabled services without a backup -> why (the catalog's note)."""
    return {s.name: s.backup.notes or "nothing to save" for s in catalog.enabled(config)
            if not (s.backup.volumes or s.backup.dump)}


def before_update(config: AiniConfig, services: Iterable[str]) -> list[str]:
    """The groups holding data that a version change of `services` touches, in deploy order:
    each is backed up as a whole before it changes."""
    changed = set(services)
    touched = {s.group for s in catalog.enabled(config) if s.name in changed}
    return list(dict.fromkeys(i.group for i in items(config) if i.group in touched))


def before_update_line(config: AiniConfig, groups: Sequence[str]) -> str | None:
    """What the plan says about the backup before an update."""
    if not groups:
        return None
    if backup_catalog.enabled(config):
        return f"backup first: {', '.join(groups)} (a run into backup.repository, before the group is touched)"
    return f"! no backup before updating {', '.join(groups)}: backup.repository is not set"


def moves_refused(config: AiniConfig, moving: Sequence[str]) -> str | None:
    """Why a new major that moves its services' data (Upgrade.by_dump) cannot be made: it moves
    through the backup taken just before, so it needs backup.repository."""
    if not moving or backup_catalog.enabled(config):
        return None
    return (f"{', '.join(moving)}: the new major takes the data through the backup before the update (dump, new "
            "cluster, restore), and backup.repository is not set; set it, or keep the version running now "
            "(images.overrides)")
