"""Doing: make a Docker engine run the bundle, one compose project per group in the
manifest's order, each gated on its health checks. The executor holds no decisions: it
observes the site, asks `plan` what to do, runs the commands aini.docker builds through the
Site, records each group as it comes up, and on failure asks `diagnose` what to say.

No secret is ever in an argv: values reach containers through the 0600 env files of the
bundle. Compose runs from a stable copy of the bundle on the site (see aini.sites.local on
why files are rewritten in place).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NoReturn

import yaml

from .. import catalog
from ..docker.cmd import Runner, Tools
from ..docker.compose import compose_down_cmd, compose_up_cmd, group_healthy
from ..docker.engine import (
    DEFAULT_PULL_TIMEOUT,
    containers_cmd,
    exec_cmd,
    image_present_cmd,
    network_create_cmd,
    network_rm_cmd,
    networks_cmd,
    parse_images,
    parse_running,
    pull_cmd,
)
from ..errors import AiniError, InputError
from ..render.bundle import MANIFEST, Bundle, manifest_of
from ..render.manifest import Manifest
from .diagnose import DeployError, _indent, diagnose, missing_images_message, scrub
from .plan import DeployPlan, _mount_changes, _own_networks, plan
from . import rollback
from .record import DEPLOYED_MANIFEST, parse_deployed, record, record_entry
from .versions import VersionChange, current_images, refusal, version_changes

if TYPE_CHECKING:
    from rich.console import Console

    from ..sites.base import Site

DEFAULT_WAIT = 600  # seconds per group; Nextcloud's first install alone can take minutes


@dataclass
class GroupResult:
    group: str
    action: str
    reason: str
    seconds: float = 0.0


@dataclass
class DeployResult:
    groups: list[GroupResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def touched(self) -> list[str]:
        return [g.group for g in self.groups if g.action != "skip"]


def _composes(files: Mapping[str, object]) -> dict[str, dict]:
    return {rel.split("/", 1)[0]: yaml.safe_load(f.content)  # type: ignore[attr-defined]
            for rel, f in files.items() if rel.count("/") == 1 and rel.endswith("/compose.yml")}


def _old_composes(site: Site, groups: Iterable[str]) -> dict[str, dict]:
    result = {}
    for group in groups:
        text = site.read(f"{group}/compose.yml")
        if text is not None:
            with contextlib.suppress(yaml.YAMLError):
                result[group] = yaml.safe_load(text)
    return result


def ensure_images(tools: Tools, images: Sequence[str], manifest: Manifest, run: Runner,
                  pull_timeout: float = DEFAULT_PULL_TIMEOUT, console: Console | None = None) -> list[str]:
    """Pull what is not on the engine; stop before touching any group when an image cannot
    be had. Returns the images pulled."""
    missing: dict[str, str] = {}
    pulled: list[str] = []
    if images and run(image_present_cmd(tools, *images)).returncode == 0:
        return pulled  # all present: one command, not one per image (each is an SSH round trip on a server)
    for image in images:
        if run(image_present_cmd(tools, image)).returncode == 0:
            continue
        if console:
            console.print(f"  pulling {image}")
        r = run(pull_cmd(tools, image, pull_timeout))
        if r.returncode == 0:
            pulled.append(image)
        else:
            reason = (r.stderr.strip().splitlines() or ["pull failed"])[-1]
            missing[image] = reason[:200]
    if missing:
        raise AiniError(missing_images_message(missing, manifest))
    return pulled


def observe(files: Bundle, site: Site, tools: Tools) -> DeployPlan:
    """What the site runs and holds, read-only, turned into the plan for `files`."""
    return _plan_on(site, tools, files, manifest_of(files), parse_deployed(site.read(DEPLOYED_MANIFEST)))


def _plan_on(site: Site, tools: Tools, files: Bundle, manifest: Manifest, deployed: Mapping | None) -> DeployPlan:
    networks = site.run(networks_cmd(tools))
    if networks.returncode != 0:
        raise AiniError(f"the Docker engine does not answer: {networks.stderr.strip()[:300]}")
    composes = _composes(files)
    before = Manifest.from_dict(deployed) if deployed else None
    containers = _containers(tools, manifest.project, site.run)
    the_plan = plan(manifest, before, parse_running(containers), composes, _old_composes(site, composes),
                    networks.stdout.split())
    return replace(the_plan, versions=_versions(manifest, before, containers))


def _containers(tools: Tools, project: str, run: Runner) -> str:
    r = run(containers_cmd(tools, project))
    if r.returncode != 0:
        raise AiniError(f"the Docker engine does not answer: {r.stderr.strip()[:300]}")
    return r.stdout


def _versions(manifest: Manifest, deployed: Manifest | None, containers: str) -> tuple[VersionChange, ...]:
    new = {name: image for g in manifest.order for name, image in manifest.groups[g].images.items()}
    return version_changes(current_images(parse_images(containers), deployed), new, _rules())


def _refuse(changes: tuple[VersionChange, ...]) -> tuple[VersionChange, ...]:
    message = refusal(changes)
    if message:
        raise InputError(message)
    return changes


def refuse_version_changes(files: Bundle, site: Site, tools: Tools) -> tuple[VersionChange, ...]:
    """Stop, before anything is pulled or changed, when a service's new version is one its
    data cannot take (read from what the site runs); else the version changes ahead."""
    manifest = manifest_of(files)
    deployed = parse_deployed(site.read(DEPLOYED_MANIFEST))
    return _refuse(_versions(manifest, Manifest.from_dict(deployed) if deployed else None,
                             _containers(tools, manifest.project, site.run)))


def deploy(
    files: Bundle,
    site: Site,
    secrets: Iterable[str] = (),
    *,
    tools: Tools,
    wait_timeout: int = DEFAULT_WAIT,
    pull_timeout: float = DEFAULT_PULL_TIMEOUT,
    keep: Iterable[str] = (),
    console: Console,
    only: Iterable[str] | None = None,
    data_back: Mapping[str, rollback.DataBack] = {},  # noqa: B006 (read only)
    verify: Callable[[Sequence[str]], None] | None = None,
) -> DeployResult:
    """Bring the bundle up on `site` (this machine's engine, or a server over SSH).

    `only`: deploy just these groups (the control plane before the applications, whose
    env files are rendered from Vault); nothing else is touched, nothing taken down.

    `keep`: paths under the site's root written by others (the local certificates) that
    syncing the bundle must not delete.

    `data_back`: per group, its data's way back to the backup taken before this update; a
    changed group that fails then returns to its last healthy deploy with that data.

    `verify`: checks the data of services whose version changed, once their group is healthy
    (the catalog's, as the restore drill runs them); AiniError fails the group like its health
    gate, and it goes back the same way."""
    secrets = list(secrets)
    manifest = manifest_of(files)
    started = time.monotonic()
    result = DeployResult()
    with site.lock():
        deployed = parse_deployed(site.read(DEPLOYED_MANIFEST))
        the_plan = _plan_on(site, tools, files, manifest, deployed)
        _refuse(the_plan.versions)
        if only is not None:
            the_plan = the_plan.only(only, manifest)
        if not the_plan.changed:
            console.print(f"Nothing to deploy: {len(the_plan.actions)} groups unchanged and running.")
            result.groups = [GroupResult(a.group, a.action, a.reason) for a in the_plan.actions]
            result.seconds = time.monotonic() - started
            return result

        ensure_images(tools, the_plan.images, manifest, site.run, pull_timeout, console)
        for net in the_plan.networks:
            r = site.run(network_create_cmd(tools, net, manifest.project))
            if r.returncode != 0 and "already exists" not in r.stderr:
                raise AiniError(f"cannot create the network {net.name}: {r.stderr.strip()[:300]}")

        bundle_files = {p: f for p, f in files.items() if p != MANIFEST}
        for action in the_plan.actions:
            if action.action == "skip":
                console.print(f"[dim]= {action.group:<12} unchanged[/dim]")
                result.groups.append(GroupResult(action.group, "skip", action.reason))
                continue
            t0 = time.monotonic()
            if action.action == "down":
                old = _old_composes(site, [action.group]).get(action.group, {})
                with _progress(console, f"{action.group}: taking down ({action.reason})"):
                    r = site.run(compose_down_cmd(tools, site.root, action.group))
                if r.returncode != 0:
                    raise AiniError(f"group '{action.group}': docker compose down failed:\n"
                                    + _indent(scrub(r.stderr.strip()[-1500:], secrets)))
                for name in _own_networks(old, manifest):
                    r = site.run(network_rm_cmd(tools, name))
                    if r.returncode != 0 and "No such network" not in r.stderr:
                        console.print(f"[yellow]! network {name} left in place: {r.stderr.strip()[:200]}[/yellow]")
                site.remove(action.group)
                deployed = record(site, deployed, manifest.document, action.group, None)
                console.print(f"[yellow]- {action.group:<12} removed[/yellow] ({time.monotonic() - t0:.1f}s)")
                result.groups.append(GroupResult(action.group, "down", action.reason, time.monotonic() - t0))
                continue
            group_files = {p: f for p, f in bundle_files.items() if p.startswith(action.group + "/")}
            target, back = None, data_back.get(action.group)
            if action.reason == "changed":  # what came up healthy before is kept to go back to
                target = rollback.proven(deployed, action.group, site.read, _privacy(bundle_files))
                if target is not None:
                    target = replace(target, backup=back.run if back else None)
                    rollback.keep(site, target)
            failure = _bring_up(site, tools, action.group, group_files, keep, action.recreate,
                                manifest.groups[action.group].post_deploy, wait_timeout, secrets, console, action.reason,
                                back)
            updated = [c.service for c in the_plan.versions if c.service in manifest.groups[action.group].images]
            if failure is None and updated and verify is not None:
                failure = _verified(verify, action.group, updated, secrets)
            if failure is not None:
                # Not recorded as deployed: the next run brings the group up and retries.
                deployed = record(site, deployed, manifest.document, action.group, None)
                console.print(f"[red]✗ {action.group:<12} failed[/red] ({time.monotonic() - t0:.1f}s)")
                if target is None:
                    raise failure
                _roll_back_failed(site, tools, manifest, deployed, target, group_files, keep, wait_timeout,
                                  secrets, console, failure, back)
            deployed = record(site, deployed, manifest.document, action.group, manifest.groups[action.group].hash)
            seconds = time.monotonic() - t0
            console.print(f"[green]✓ {action.group:<12} healthy[/green] ({seconds:.1f}s, {action.reason})")
            result.groups.append(GroupResult(action.group, "up", action.reason, seconds))
    result.seconds = time.monotonic() - started
    console.print(f"Deployed {len(result.touched)} of {len(manifest.order)} groups in {result.seconds:.1f}s.")
    return result


def _privacy(files: Mapping[str, object]):
    """Whether a site file is 0600: as the bundle has it; an env file when the bundle no longer has it."""
    return lambda path: files[path].private if path in files else path.endswith(".env")  # type: ignore[attr-defined]


def _kept(keep: Iterable[str], group: str) -> list[str]:
    """The paths of `keep` in the group's directory: what syncing its files leaves alone."""
    return [k for k in keep if k.startswith(group + "/")]


def _bring_up(site: Site, tools: Tools, group: str, files: Mapping[str, object], keep: Iterable[str],
              recreate: Sequence[str], steps: Sequence[Mapping[str, str]], wait_timeout: int,
              secrets: Sequence[str], console: Console, reason: str,
              back: rollback.DataBack | None = None) -> DeployError | None:
    """The group's files written (with `back` moving its data to a new major around that:
    DataBack.set_aside, move), its containers up and health-gated, its post-deploy steps run;
    what went wrong, or None."""
    moving = back is not None and back.set_aside is not None and back.move is not None
    try:
        if moving:
            back.set_aside()  # type: ignore[union-attr,misc]
        site.sync(group, files, _kept(keep, group))  # type: ignore[arg-type]
        if moving:
            back.move()  # type: ignore[union-attr,misc]
    except AiniError as exc:
        if not moving:
            raise
        return DeployError(f"group '{group}': moving its data to the new major failed: {scrub(str(exc), secrets)}",
                           group)
    with _progress(console, f"[bold]{group}[/bold]: up, waiting for health checks "
                            f"(at most {wait_timeout}s; {reason})"):
        deadline = time.monotonic() + wait_timeout
        r = site.run(compose_up_cmd(tools, site.root, group, wait_timeout))
        if r.returncode == 0 and recreate:
            r = site.run(compose_up_cmd(tools, site.root, group, wait_timeout, tuple(recreate)))
        healthy = r.returncode == 0 and group_healthy(tools, site.run, site.root, group, deadline)
    if not healthy:
        return diagnose(tools, site.root, group, r.stdout + r.stderr, wait_timeout, secrets, site.run)
    return _steps(site, tools, group, steps, secrets, console)


def _verified(verify: Callable[[Sequence[str]], None], group: str, services: Sequence[str],
              secrets: Sequence[str]) -> DeployError | None:
    try:
        verify(services)
    except AiniError as exc:
        return DeployError(f"group '{group}' is up, but the check of its data after the update failed: "
                           f"{scrub(str(exc), secrets)}", group)
    return None


def _steps(site: Site, tools: Tools, group: str, steps: Sequence[Mapping[str, str]], secrets: Sequence[str],
           console: Console) -> DeployError | None:
    """The group's post-deploy steps, once it is healthy; the first that fails, or None."""
    for step in steps:
        with _progress(console, f"{group}: {step['description'] or 'post-deploy step'}"):
            r = site.run(exec_cmd(tools, step))
        if r.returncode != 0:
            output = scrub((r.stdout + r.stderr).strip()[-1500:], secrets)
            return DeployError(f"group '{group}' is up, but its step '{step['description']}' in "
                               f"{step['container']} failed (exit {r.returncode}):\n{_indent(output)}\n"
                               "Fix the cause and run the command again.", group, [step["container"]])
    return None


def _rules() -> dict:
    return {spec.name: spec.upgrade for spec in catalog.CATALOG}


def new_clusters(changes: Iterable[VersionChange]) -> list[str]:
    """The services of `changes` that cross a major and are saved as a dump: their way back to
    the backup before the change empties their volumes, so the old major makes a new cluster
    for the dump rather than meeting files the newer one rewrote (PostgreSQL and MariaDB
    refuse those)."""
    return [c.service for c in changes if c.major and catalog.by_name(c.service).backup.dump]


def _going_back(target: rollback.Target, running: Mapping[str, str]) -> tuple[VersionChange, ...]:
    """The version changes a return to `target` makes, judged like any other: a service whose
    data a newer version may have rewritten refuses it."""
    return version_changes(running, target.images, _rules())


def _go_back(site: Site, tools: Tools, target: rollback.Target, back: rollback.DataBack | None,
             replaced: Mapping[str, object], keep: Iterable[str], wait_timeout: int, secrets: Sequence[str],
             console: Console, reason: str) -> DeployError | None:
    """The group at `target` again, its post-deploy steps run: with `back`, its old files put in
    place and its data restored under them (which starts and health-gates it; AiniError when
    that fails), else brought up from its files; what went wrong, or None."""
    group = target.group
    steps = tuple(target.entry.get("post_deploy") or ())
    if back is None:
        recreate = _mount_changes(group, _composes(target.files).get(group, {}), _composes(replaced).get(group),
                                  target.digests, {p: f.digest for p, f in replaced.items()})  # type: ignore[attr-defined]
        return _bring_up(site, tools, group, target.files, keep, recreate, steps, wait_timeout, secrets, console, reason)
    site.sync(group, target.files, _kept(keep, group))  # type: ignore[arg-type]
    back.put_back()
    return _steps(site, tools, group, steps, secrets, console)


def _roll_back_failed(site: Site, tools: Tools, manifest: Manifest, deployed: Mapping, target: rollback.Target,
                      failed: Mapping[str, object], keep: Iterable[str], wait_timeout: int, secrets: Sequence[str],
                      console: Console, failure: DeployError, back: rollback.DataBack | None) -> NoReturn:
    """A changed group that failed goes back to its last healthy deploy, with the data of the
    backup taken before the update when there is one (the failed version may have migrated
    it); the error says what failed (with its logs, read before the rollback replaced the
    containers) and how the rollback went."""
    group = target.group
    said = f"{failure}\n"
    refused = [c.refused for c in _going_back(target, manifest.groups[group].images) if c.refused]
    if refused and back is None:
        raise DeployError(said + f"Not rolled back to its last healthy deploy: {'; '.join(refused)}",
                          group, failure.containers)
    t0 = time.monotonic()
    try:
        again: Exception | None = _go_back(site, tools, target, back, failed, keep, wait_timeout, secrets, console,
                                           "rolling back to its last healthy deploy")
    except AiniError as exc:
        again = exc
    if again is not None:
        data = f" with its data from the backup before the update (run {back.run})" if back else ""
        raise DeployError(said + f"Rolling back to its last healthy deploy{data} failed too:\n{_indent(str(again))}",
                          group, failure.containers)
    record_entry(site, deployed, manifest.document, group, target.entry, target.digests)
    console.print(f"[yellow]↩ {group:<12} rolled back[/yellow] ({time.monotonic() - t0:.1f}s)")
    data = f" with its data as the backup before the update saved it (run {back.run})" if back else ""
    raise DeployError(said + f"Rolled back: {group} runs its last healthy deploy again ({target.shown()}){data}, "
                      "healthy.",
                      group, failure.containers)


def roll_back(site: Site, name: str, secrets: Iterable[str] = (), *, tools: Tools, wait_timeout: int = DEFAULT_WAIT,
              keep: Iterable[str] = (), console: Console,
              data_back: Callable[[str, str, Sequence[str]], rollback.DataBack] | None = None) -> GroupResult:
    """`aini rollback GROUP`: the group (or the group of a service) back to its deploy before
    the last change, health-gated like a deploy. What it replaces becomes the target in turn,
    so a second rollback goes forward again.

    A version change its data cannot take (a newer version migrated it) goes back only with the
    data of the backup taken just before that update: `data_back(group, run)` gives its way
    back (and may refuse, e.g. unconfirmed), given the services whose older major makes a new
    cluster for the dump (new_clusters); without such a run, or without `data_back`, it is
    refused (exit 2) before anything changes."""
    secrets = list(secrets)
    with site.lock():
        deployed = parse_deployed(site.read(DEPLOYED_MANIFEST)) or {}
        groups = deployed.get("groups") or {}
        group = name if name in groups else next(
            (g for g, entry in groups.items() if name in (entry.get("services") or ())), None)
        if group is None:
            raise InputError(f"'{name}' is neither a deployed group nor a service of one; deployed groups: "
                             f"{', '.join(groups) or 'none'}")
        target = rollback.load(site, group)
        if target is None:
            raise InputError(f"no earlier deploy of '{group}' is kept on this site to go back to: one is kept when "
                             "aini up changes a group that came up healthy before")
        running = current_images(parse_images(_containers(tools, str(deployed.get("project", "")), site.run)),
                                 Manifest.from_dict(deployed))
        changes = _going_back(target, {s: i for s, i in running.items() if s in target.images})
        back = None
        if refusal(changes) and target.backup and data_back is not None:
            back = data_back(group, target.backup, new_clusters(c for c in changes if c.refused))
        else:
            _refuse(changes)
        now = rollback.proven(deployed, group, site.read, _privacy(target.files))
        t0 = time.monotonic()
        failure = _go_back(site, tools, target, back, now.files if now else {}, keep, wait_timeout, secrets, console,
                           "rollback")
        if failure is not None:
            record(site, deployed, deployed, group, None)
            raise DeployError(f"{failure}\naini up deploys aini.yml's version of '{group}' again.", group,
                              failure.containers)
        record_entry(site, deployed, deployed, group, target.entry, target.digests)
        if now is not None:
            rollback.keep(site, now)
        seconds = time.monotonic() - t0
        console.print(f"[green]↩ {group:<12} rolled back, healthy[/green] ({seconds:.1f}s)")
        return GroupResult(group, "rollback", target.shown() + (f", its data from run {back.run}" if back else ""),
                           seconds)


@contextlib.contextmanager
def _progress(console: Console, description: str):
    """A spinner with the elapsed time while one group deploys (transient: the result line stays)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if not console.is_terminal:  # a log (CI, a pipe): one line when it starts, one when it ends
        console.print(f"… {description}")
        yield
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        progress.add_task(description, total=None)
        yield
