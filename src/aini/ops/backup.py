"""`aini backup`, `aini backup list` and `aini restore`: restic on the site's engine, from
the pinned image, into `backup.repository`.

The repository password and credentials reach restic through a 0600 env file in the site's
root (never an argv, never the terminal). Backups and deploys take the same site lock, so
neither sees the other's half-done work."""

from __future__ import annotations

import contextlib
import functools
import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import catalog
from ..backup import plan, record, runner, scheduled, scope
from ..backup.retention import Keep
from ..backup.runner import JOURNAL, HEALTH_WAIT, RunResult, Say, run_fed, run_id, run_ok, snapshot_list, what
from ..catalog import backup as backup_catalog
from ..controlplane import registry
from ..controlplane.bootstrap import State, consul_back, key_for, load_material, root_token, vault_back
from ..controlplane.breakglass import Key
from ..docker import restic
from ..docker.cmd import Tools
from ..deploy.apply import new_clusters
from ..deploy.rollback import DataBack
from ..deploy.versions import VersionChange, tag_of
from ..docker.compose import compose_create_cmd, compose_start_cmd, compose_up_cmd
from ..docker.engine import volume_create_cmd, volume_rm_cmd, volumes_cmd
from ..errors import AiniError, InputError
from ..project import Project
from ..render.compose import pinned_ref, volume_name
from ..sites.base import Site
from ..sites.ssh import LOCK_FILE
from . import confirm_project, recovery
from .render import prepare_secrets
from .secrets import vault_at
from .targets import site_for, tools_for

ENV_FILE = "restic.env"


@dataclass
class Restored:
    run: str
    safety_run: str
    services: list[str]
    seconds: float
    renewed: list[str]  # control planes back with their own keys: aini up gives AINI new tokens in them


def repository_env(project: Project) -> dict[str, str]:
    """What restic reads from its env file: the repository, its password, its credentials.
    Called before the site is reached: bad input is refused before any connection."""
    config = project.config
    if not backup_catalog.enabled(config):
        raise InputError("backup.repository is not set in aini.yml; backups are off "
                         "(e.g. backup: {repository: 's3:https://fsn1.your-objectstorage.com/BUCKET/aini'})")
    store, _, _ = prepare_secrets(project)
    store.save()  # a generated repository password is kept before anything is encrypted with it
    env = {"RESTIC_REPOSITORY": config.backup.repository or "",
           "RESTIC_PASSWORD": store.get(backup_catalog.REPOSITORY_PASSWORD.name) or ""}
    missing = []
    for secret, variable, required in backup_catalog.credentials(config):
        value = store.get(secret.name)
        if value:
            env[variable] = value
        elif required:
            missing.append(secret.env_var)
    if missing:
        raise InputError(f"backup.repository needs {' and '.join(missing)} in the environment once "
                         "(aini keeps them in .aini/); they are not set")
    return env


def repository_of(project: Project, site: Site) -> restic.Repository:
    location = project.config.backup.repository or ""
    return restic.Repository(pinned_ref(backup_catalog.RESTIC, project.config.images), str(site.root / ENV_FILE),
                             host=project.config.project, path=location if location.startswith("/") else None)


def _repository(project: Project, site: Site, tools: Tools, env: dict[str, str]) -> restic.Repository:
    """The env file written, and the repository reached (runner.probe)."""
    site.write(ENV_FILE, restic.env_file(env))
    repo = repository_of(project, site)
    runner.probe(site, tools, repo)
    return repo


def keep_of(project: Project) -> Keep:
    keep = project.config.backup.retention
    return Keep(keep.daily, keep.weekly, keep.monthly)


def tidy(project: Project, site: Site, tools: Tools, repo: restic.Repository, say: Say, restoring: bool) -> None:
    runner.tidy(site, tools, repo, scope.items(project.config), say, restoring)


@contextlib.contextmanager
def opened(project: Project, say: Say, site: Site | None = None) -> Iterator[tuple[Site, Tools, restic.Repository]]:
    """The site locked (backups and deploys exclude each other), the repository reached, and
    what an interrupted run left tidied: how every backup command but restore begins (and a
    deploy that finds a journal). `site`: one already open."""
    env = repository_env(project)
    with (contextlib.nullcontext(site) if site else site_for(project)) as site, site.lock():
        tools = tools_for(project)
        repo = _repository(project, site, tools, env)
        tidy(project, site, tools, repo, say, restoring=False)
        yield site, tools, repo


def backup(project: Project, only: Sequence[str] = (), say: Say = lambda _: None, site: Site | None = None
           ) -> RunResult:
    """One run: every chosen service's volumes and dump, group by group; then the retention
    of backup.retention, and the run in the site's record (what `aini status` judges): runner.run_backup.
    `site`: one already open (a deploy's)."""
    config = project.config
    chosen = scope.items(config, only)
    with opened(project, say, site) as (site, tools, repo):
        result = runner.run_backup(site, tools, repo, chosen, _tokens(project, chosen), keep_of(project), say,
                                   not_saved=scope.not_saved(config) if not only else {})
        _kit(project, site, tools, repo, say)
        _drop_set_aside(site, tools, [s.service for s in result.services if s.error is None], say)
        return result


def _drop_set_aside(site: Site, tools: Tools, saved: Sequence[str], say: Say) -> None:
    """The old data a major upgrade set aside (move), removed once a backup of its service
    succeeded: that backup holds the data as the new major has it."""
    volumes = {v for service in saved for v in _volumes(service)}
    names = [n for n in site.run(volumes_cmd(tools, plan.KEPT_LABEL)).stdout.split()
             if n.rpartition(".before-")[0] in volumes]
    if not names:
        return
    r = site.run(volume_rm_cmd(tools, names))
    if r.returncode == 0:
        say(f"removed {', '.join(names)}: the old data an upgrade set aside, now that a backup holds the new")
    else:
        say(f"warning: {', '.join(names)} left in place: {r.stderr.strip()[:200]}")


def before_update(project: Project, site: Site, changes: Sequence[VersionChange], say: Say) -> dict[str, DataBack]:
    """A run of exactly the groups holding data whose version changes, before any of them is
    touched; per group saved, how its data returns to that run when its update fails (and,
    for a major that moves its data, how it moves). Nothing when there is nothing to save or
    no repository (the plan says so). A failed run stops the update before anything changed."""
    groups = scope.before_update(project.config, [c.service for c in changes])
    line = scope.before_update_line(project.config, groups)
    if line:
        say(line)
    if not groups or not backup_catalog.enabled(project.config):
        return {}
    result = backup(project, groups, say, site)
    failed = {s.service: s.error for s in result.services if s.error is not None}
    if failed:
        raise AiniError(f"the backup before updating {', '.join(groups)} failed, so nothing was updated:\n"
                        + "\n".join(f"  - {name}: {error}" for name, error in failed.items()))
    say(f"backed up {', '.join(groups)} before the update: run {result.run}")
    moving, fresh = {c.service: c.current for c in changes if c.moves}, new_clusters(changes)
    backs = {}
    for g in groups:
        members = {s.name for s in catalog.enabled(project.config) if s.group == g}
        moved = {name: image for name, image in moving.items() if name in members}
        steps = [functools.partial(f, project, site, result.run, g, moved, say) for f in (set_aside, move)] \
            if moved else [None, None]
        backs[g] = DataBack(result.run, functools.partial(put_back, project, site, result.run, g, say,
                                                          tuple(s for s in fresh if s in members)), *steps)
    return backs


def _volumes(service: str) -> list[str]:
    return [volume_name(v.name) for v in catalog.by_name(service).volumes]


def verify(project: Project, site: Site, services: Sequence[str], say: Say) -> None:
    """The catalog's check of each service's data (Backup.verify, as the restore drill runs it),
    in its running container: after an update, AiniError naming the first that fails."""
    tools = tools_for(project)
    for item in (i for i in scope.items(project.config) if i.service in services and i.backup.verify):
        r = site.run(plan.in_container(tools, item, item.backup.verify, timeout=300))
        said = (r.stdout.strip() or r.stderr.strip()).splitlines()
        if r.returncode != 0:
            raise AiniError(f"{item.service}: {said[-1][:300] if said else f'exit {r.returncode}'}")
        say(f"{item.service}: checked after the update: {said[-1][:200] if said else 'ok'}")


def _kept_name(volume: str, image: str) -> str:
    return f"{volume}.before-{tag_of(image) or 'upgrade'}"


def set_aside(project: Project, site: Site, run: str, group: str, moved: Mapping[str, str], say: Say) -> None:
    """Before a group's new files, when a new major cannot read its data (`moved`: service ->
    the image that wrote it): the group stopped, each such service's volumes copied to a kept
    volume (labelled with that image, kept until the next backup) and emptied. From here a
    restore journal is open: a kill leaves the next command saying to finish with `aini restore
    GROUP --snapshot RUN`, which makes the dump a new cluster of whichever major the files name."""
    tools, config = tools_for(project), project.config
    repo = _repository(project, site, tools, repository_env(project))
    say(f"{group}: stopping it to move {', '.join(moved)} to a new cluster")
    site.run(plan.stop_cmd(tools, [s.container for s in catalog.enabled(config) if s.group == group]))
    runner.write_journal(site, "restore", run, [i for i in scope.items(config, [group]) if i.service in moved], run)
    for service, image in moved.items():
        for volume in _volumes(service):
            kept = _kept_name(volume, image)
            labels = {plan.KEPT_LABEL: image, "aini.project": config.project}
            run_ok(site, volume_create_cmd(tools, kept, labels), f"docker volume create {kept}")
            run_ok(site, plan.set_aside_cmd(tools, repo.image, volume, kept), f"setting {volume} aside")
            say(f"{service}: its old data kept in the volume {kept} until the next backup")


def move(project: Project, site: Site, run: str, group: str, moved: Mapping[str, str], say: Say) -> None:
    """After set_aside, with the new files in place: the moved services started alone on their
    empty volumes (a new cluster each), the dump of `run` restored into them; the journal closed."""
    tools, config = tools_for(project), project.config
    repo = _repository(project, site, tools, repository_env(project))
    chosen = [i for i in scope.items(config, [group]) if i.service in moved]
    _, picked = plan.pick_run(chosen, snapshot_list(site, tools, repo), run)
    _databases_up(site, tools, group, chosen, say)
    tokens = _tokens(project, chosen)
    for item in chosen:
        for cmd in plan.restore_cmds(tools, repo, item, [s for s in picked[item.service] if s.dump]):
            say(f"{item.service}: restoring {what(cmd)} into the new cluster")
            r = run_fed(site, cmd, tokens.get(item.service))
            if r.returncode != 0:
                raise AiniError(f"restoring {item.service}'s dump of run {run} into its new cluster failed "
                                f"({r.stderr.strip()[-300:] or 'no message'})")
    site.remove(JOURNAL)


def _databases_up(site: Site, tools: Tools, group: str, members: Sequence[plan.Item], say: Say) -> None:
    """The members restored from a dump running, healthy and ready, their applications not
    started: a database recreated unstarted (a changed image) or on an empty volume (a new
    cluster, whose first start runs a server on its socket alone) takes its dump only then."""
    databases = [m for m in members if m.dump]
    if not databases:
        return
    say(f"{group}: starting {', '.join(m.service for m in databases)} for the restore")
    run_ok(site, compose_start_cmd(tools, site.root, group, [m.service for m in databases], HEALTH_WAIT),
           "docker compose up")
    for m in databases:
        deadline = time.monotonic() + HEALTH_WAIT
        while m.backup.ready and site.run(plan.ready_cmd(tools, m)).returncode != 0:
            if time.monotonic() > deadline:
                raise AiniError(f"{m.service} did not answer within {HEALTH_WAIT}s ({m.backup.ready})")
            time.sleep(1)


def put_back(project: Project, site: Site, run: str, group: str, say: Say, fresh: Sequence[str] = ()) -> None:
    """A failed update's group, its old files in place, made as they say (none started), its
    data restored from `run`, started and health-gated. `fresh`: services whose volumes a
    new major rewrote: emptied first, so the old major makes a new cluster for the dump.
    Inside a restore journal: a kill leaves the next command saying how to finish it."""
    tools = tools_for(project)
    repo = _repository(project, site, tools, repository_env(project))
    chosen = scope.items(project.config, [group])
    _, picked = plan.pick_run(chosen, snapshot_list(site, tools, repo), run)
    say(f"{group}: its data back to run {run}, from before the update")
    run_ok(site, compose_create_cmd(tools, site.root, group), "docker compose up --no-start")
    runner.write_journal(site, "restore", run, chosen, run)
    for volume in (v for service in fresh for v in _volumes(service)):
        say(f"{group}: emptying {volume} for the older major's new cluster")
        run_ok(site, plan.empty_volume_cmd(tools, repo.image, volume), f"emptying {volume}")
    key = key_for(project.config)
    _restore_group(project, site, tools, repo, group, chosen, picked, run, say, _tokens(project, chosen, key), key)
    site.remove(JOURNAL)
    # The old major runs that data again: a copy set aside on the way up is stale from here, and a
    # later move must take a new one.
    _drop_set_aside(site, tools, fresh, say)


def _kit(project: Project, site: Site, tools: Tools, repo: restic.Repository, say: Say, probe: bool = False) -> None:
    """The recovery kit kept current; its failure is said, and leaves the backup (or the deploy)
    as it is. `probe`: the repository not reached yet by this command."""
    try:
        if recovery.kit_current(project, site, repo):
            return
        if probe:
            runner.probe(site, tools, repo)
        runner.write_journal(site, "recovery kit", run_id(), [])  # a kill from here on is tidied like a run's
        try:
            recovery.store_kit(project, site, tools, repo, say)
        finally:
            site.remove(JOURNAL)
    except AiniError as exc:
        say(f"warning: the recovery kit was not stored: {exc}")


def check(project: Project, read_data_percent: int | None = None) -> None:
    """`restic check`: the repository's structure, and with a percentage that share of its
    data read back and verified. AiniError with restic's message when it finds damage."""
    if read_data_percent is not None and not 0 < read_data_percent <= 100:
        raise InputError("--read-data: a percentage from 1 to 100")
    with opened(project, lambda _: None) as (site, tools, repo):
        error = runner.check_repository(site, tools, repo, read_data_percent)
    if error:
        raise AiniError(f"restic check: {error}")


def _tokens(project: Project, chosen: Sequence[plan.Item], key: Key | None = None) -> dict[str, str]:
    """Service -> the token its dump (or, given the break-glass `key`, its restore) reads: the
    backups' snapshot tokens from .aini/, and for a restore that needs it Vault's root token
    from the break-glass file."""
    state, tokens = State.load(project.root), {}
    for item in chosen:
        if not item.backup.token:
            continue
        if key is not None and item.backup.restore_token == "root":
            tokens[item.service] = root_token(project.root, key, f"restoring {item.service} needs Vault's root token")
        elif token := state.snapshot_token(item.group):
            tokens[item.service] = token
    return tokens


def snapshots(project: Project) -> list[restic.Snapshot]:
    env = repository_env(project)
    with site_for(project) as site:
        tools = tools_for(project)
        return snapshot_list(site, tools, _repository(project, site, tools, env))


def restore(project: Project, only: Sequence[str], confirm: str | None, ask: Callable[[str], str],
            run: str | None = None, say: Say = lambda _: None) -> Restored:
    """The chosen services put back to one run: first a safety backup of what they hold now,
    then per group the containers other than the databases stopped, volumes written back,
    dumps loaded into the running databases, the group started and health-gated."""
    config = project.config
    chosen = scope.items(config, only)
    if not chosen:
        raise InputError("nothing to restore: none of those services keeps data")
    env = repository_env(project)
    start = time.monotonic()
    with site_for(project) as site, site.lock():
        tools = tools_for(project)
        repo = _repository(project, site, tools, env)
        picked_run, picked = plan.pick_run(chosen, snapshot_list(site, tools, repo), run)
        names = ", ".join(i.service for i in chosen)
        confirm_project(config.project, confirm, ask, f"Restore {names} to run {picked_run}, overwriting their data?",
                        "nothing was restored")
        key = key_for(config)
        restore_tokens = _tokens(project, chosen, key)  # Vault's asks for the break-glass passphrase
        tidy(project, site, tools, repo, say, restoring=True)
        safety_run = run_id()
        runner.write_journal(site, "restore", picked_run, chosen, safety_run)
        say(f"safety backup of {names} first")
        safety = runner.backup_on(site, tools, repo, chosen, say, safety_run, _tokens(project, chosen), safety=True)
        if not safety.ok:
            site.remove(JOURNAL)  # nothing was overwritten
            failed = "; ".join(f"{s.service}: {s.error}" for s in safety.services if s.error)
            raise AiniError(f"the safety backup failed, nothing was restored: {failed}")
        renewed: list[str] = []
        for group, members in plan.by_group(chosen).items():
            renewed += _restore_group(project, site, tools, repo, group, members, picked, safety.run, say,
                                      restore_tokens, key)
        site.remove(JOURNAL)
    return Restored(picked_run, safety.run, [i.service for i in chosen], time.monotonic() - start, renewed)


def _restore_group(project: Project, site: Site, tools: Tools, repo: restic.Repository, group: str,
                   members: Sequence[plan.Item], picked: dict[str, list[restic.Snapshot]], safety_run: str,
                   say: Say, tokens: dict[str, str], key: Key) -> list[str]:
    """The group's members put back; returns the control planes whose own keys or tokens came
    back with their snapshot (their AINI tokens are renewed by the next aini up)."""
    databases = {m.container for m in members if m.dump}
    stop = [s.container for s in catalog.enabled(project.config) if s.group == group and s.container not in databases]
    if stop:
        say(f"{group}: stopping {', '.join(stop)}")
        run_ok(site, plan.stop_cmd(tools, stop), "docker stop")
    _databases_up(site, tools, group, members, say)
    renewed = []
    for m in members:
        for snap in picked[m.service]:
            [cmd] = plan.restore_cmds(tools, repo, m, [snap])
            say(f"{m.service}: restoring {what(cmd)}")
            r = run_fed(site, cmd, tokens.get(m.service))
            refused = m.backup.refused_as_foreign  # matched across line breaks: a CLI may wrap its error
            if r.returncode != 0 and snap.dump and refused and refused in " ".join(r.stderr.split()) and \
                    load_material(project.root, key).retired_vaults:
                say(f"{m.service}: its snapshot is of the {m.service} this one replaced (a new server): restoring "
                    "it forced, then unsealing it with that one's keys from the break-glass file")
                [cmd] = plan.restore_cmds(tools, repo, m, [snap], foreign=True)
                r = run_fed(site, cmd, tokens.get(m.service))
                if r.returncode == 0:
                    vault_back(vault_at(site, project.config), project.root, key)
                    renewed.append(m.service)
            if r.returncode != 0:
                raise AiniError(f"restore of {m.service} failed ({r.stderr.strip()[-300:] or 'no message'}); "
                                f"group {group} is left stopped; what it held before is run {safety_run} "
                                f"(aini restore {group} --snapshot {safety_run})")
        if m.backup.carries == "acl" and consul_back(registry.consul_at(site), project.root, key):
            say(f"{m.service}: its ACL tokens are the snapshot's; the break-glass file's management token is "
                "that one's again")
            renewed.append(m.service)
    say(f"{group}: starting, waiting for it to be healthy")
    if stop:
        run_ok(site, plan.start_cmd(tools, stop), "docker start")
    for m in members:  # the snapshot was taken in the state `before` put it in (maintenance mode)
        if m.backup.after:
            run_ok(site, plan.in_container(tools, m, m.backup.after, timeout=300), f"{m.service}: after restore")
    r = site.run(compose_up_cmd(tools, site.root, group, HEALTH_WAIT))
    if r.returncode != 0:
        raise AiniError(f"group {group} did not become healthy after the restore: {r.stderr.strip()[-300:]}")
    return renewed


def schedule_on(project: Project, site: Site, say: Say) -> None:
    """After a server's deploy: backup.schedule installed there (backup.scheduled), with this
    deploy's services, repository and snapshot tokens; removed when backups are off."""
    config = project.config
    consul = _consul_of(project, site)
    if not backup_catalog.enabled(config):
        if site.read(scheduled.JOB) is not None:
            for cmd in scheduled.remove_cmds(site.root):
                site.run(cmd)  # what is already gone is not an error
            if consul is not None:
                registry.remove_backup_service(consul)
            say("backup.repository is unset: the server's backup timer is removed (the repository is untouched)")
        return
    site.write(ENV_FILE, restic.env_file(repository_env(project)))
    chosen = scope.items(config)
    if consul is not None:
        overdue = record.overdue_after(config.backup.schedule, dt.datetime.now(dt.UTC))
        registry.ensure_backup_service(consul, int(overdue.total_seconds()), config.backup.schedule)
    tools, repo = tools_for(project), repository_of(project, site)
    job = scheduled.Job(str(site.root), str(LOCK_FILE), tools, repo,
                        tuple(chosen), keep_of(project), scope.not_saved(config), config.backup.notify_url,
                        catalog.by_name("consul").container if consul is not None else None)
    site.sync(scheduled.SCHEDULE_DIR, scheduled.files(job, _tokens(project, chosen), config.backup.schedule,
                                                      config.project, Path(__file__).parents[1]), keep=())
    for cmd in scheduled.install_cmds(site.root):
        run_ok(site, cmd, "installing the backup timer")
    _kit(project, site, tools, repo, say, probe=True)
    say(f"Backups run on the server at '{config.backup.schedule}' (cron, server time: {scheduled.UNIT}.timer).")


def _consul_of(project: Project, site: Site) -> registry.ConsulClient | None:
    """Consul with the deploy's token, when it is part of the stack."""
    token = State.load(project.root).consul_deploy_token
    if not token or not any(s.name == "consul" for s in catalog.enabled(project.config)):
        return None
    return registry.consul_at(site, token)
