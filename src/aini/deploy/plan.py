"""Deciding, without I/O: what to do with each group, given the bundle's manifest, the
deployed one, what runs and which networks exist. `DeployPlan.lines()` is the plan as text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from ..docker.engine import NetworkSpec
from ..render.manifest import Manifest
from .versions import VersionChange


@dataclass(frozen=True)
class GroupAction:
    group: str
    action: Literal["up", "skip", "down"]
    reason: str
    recreate: tuple[str, ...] = ()  # services to recreate after `up`: a file they mount changed


@dataclass(frozen=True)
class DeployPlan:
    actions: tuple[GroupAction, ...]
    images: tuple[str, ...]  # every image the groups to bring up need, in order
    networks: tuple[NetworkSpec, ...]  # networks to create before the first group
    versions: tuple[VersionChange, ...] = ()  # services whose image changes, judged by their upgrade rules
    notes: tuple[str, ...] = ()  # what the caller does around the deploy (the backup before an update)

    @property
    def changed(self) -> list[str]:
        return [a.group for a in self.actions if a.action != "skip"]

    def only(self, groups: Iterable[str], manifest: Manifest) -> DeployPlan:
        """Just these groups brought up (the control plane before the applications); nothing
        else touched, nothing taken down."""
        wanted = set(groups)
        actions = tuple(a for a in self.actions if a.group in wanted and a.action != "down")
        return DeployPlan(actions, _images(actions, manifest), self.networks, self.versions, self.notes)

    def lines(self) -> list[str]:
        """The plan as text, one line per step in the order they run: networks to create,
        then each group (+ up, = unchanged, - down) with its reason."""
        out = [f"+ network {n.name}" + (f" {n.subnet}" if n.subnet else "") + (" internal" if n.internal else "")
               for n in self.networks]
        sign = {"up": "+", "skip": "=", "down": "-"}
        for a in self.actions:
            line = f"{sign[a.action]} {a.group:<14} {a.action:<4} {a.reason}"
            out.append(line + (f" (recreate {', '.join(a.recreate)})" if a.recreate else ""))
        out += [v.line() for v in self.versions]
        out += self.notes
        if self.images:
            out.append(f"images: {', '.join(self.images)}")
        return out


def plan(
    manifest: Manifest,
    deployed: Manifest | None,
    running: Mapping[str, set[str]],
    composes: Mapping[str, Mapping],
    old_composes: Mapping[str, Mapping] | None = None,
    existing_networks: Iterable[str] = (),
) -> DeployPlan:
    """What to do with each group, in the manifest's order, then groups to take down.

    A group is brought up when its hash differs from the deployed one, when it was never
    deployed, or when one of its containers is not running (a crash mid-deploy, a manual
    `docker rm`): compose recreates nothing that is already as wanted, so this is safe.
    `running` maps group -> names of its services whose container runs."""
    old_composes = old_composes or {}
    deployed_groups = deployed.groups if deployed else {}
    deployed_files = deployed.files if deployed else {}
    existing = set(existing_networks)
    actions: list[GroupAction] = []
    for group in manifest.order:
        info = manifest.groups[group]
        before = deployed_groups.get(group)
        missing = sorted(set(info.services) - running.get(group, set()))
        if before is None:
            actions.append(GroupAction(group, "up", "new"))
        elif before.hash != info.hash:
            recreate = _mount_changes(group, composes.get(group, {}), old_composes.get(group),
                                      manifest.files, deployed_files)
            actions.append(GroupAction(group, "up", "changed", recreate))
        elif missing:
            actions.append(GroupAction(group, "up", f"not running: {', '.join(missing)}"))
        else:
            actions.append(GroupAction(group, "skip", "unchanged"))

    networks: list[NetworkSpec] = []
    defined = _networks_defined(composes)
    declared = {n["name"]: n for n in manifest.networks.values()}
    for name in sorted(_external_networks(composes) | set(declared)):
        if name in existing:
            continue
        owner = defined.get(name)
        if owner is None:
            spec = declared.get(name, {})
            networks.append(NetworkSpec(name, spec.get("subnet"), bool(spec.get("internal"))))
            continue
        # The group that defines it creates it: make sure that group runs (it comes first).
        for i, a in enumerate(actions):
            if a.group == owner and a.action == "skip":
                actions[i] = GroupAction(owner, "up", f"network {name} missing")

    for group in reversed(list(deployed_groups)):
        if group not in manifest.groups:
            actions.append(GroupAction(group, "down", "no longer in the bundle"))

    return DeployPlan(tuple(actions), _images(actions, manifest), tuple(networks))


def _images(actions: Iterable[GroupAction], manifest: Manifest) -> tuple[str, ...]:
    """Every image the groups to bring up need, in order, each once."""
    return manifest.images(a.group for a in actions if a.action == "up")


def _external_networks(composes: Mapping[str, Mapping]) -> set[str]:
    names = set()
    for doc in composes.values():
        for key, net in (doc.get("networks") or {}).items():
            if (net or {}).get("external"):
                names.add((net or {}).get("name", key))
    return names


def _own_networks(old_compose: Mapping, manifest: Manifest) -> list[str]:
    """The internal network a group taken down used, unless the bundle still declares it."""
    declared = {n["name"] for n in manifest.networks.values()}
    internal = ((old_compose.get("networks") or {}).get("internal") or {}).get("name")
    return [internal] if internal and internal not in declared else []


def _networks_defined(composes: Mapping[str, Mapping]) -> dict[str, str]:
    """Shared network name -> the group whose compose project creates it."""
    owners = {}
    for group, doc in composes.items():
        for key, net in (doc.get("networks") or {}).items():
            net = net or {}
            if not net.get("external") and "name" in net:
                owners[net["name"]] = group
    return owners


def _mount_changes(group: str, compose: Mapping, old_compose: Mapping | None,
                   files: Mapping[str, str], old_files: Mapping[str, str]) -> tuple[str, ...]:
    """Services whose definition is unchanged (compose would keep the container) but that
    mount a bundle file whose content changed: they must be recreated to read it. Files
    inside a mounted directory are left to the service (Traefik watches its dynamic/)."""
    if old_compose is None:
        return ()
    result = []
    for name, svc in (compose.get("services") or {}).items():
        if (old_compose.get("services") or {}).get(name) != svc:
            continue  # compose recreates it anyway
        for volume in svc.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith("./"):
                continue
            path = f"{group}/{source[2:]}"
            if path in files and files.get(path) != old_files.get(path):
                result.append(name)
                break
    return tuple(result)
