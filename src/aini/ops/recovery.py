"""The recovery kit and `aini recover`: a project rebuilt from its backup repository with
only the repository's location, its credentials and the break-glass passphrase.

Every `aini backup`, and `aini up` on a server, stores the kit (aini.yml, .aini/secrets.json,
.aini/controlplane.json and the break-glass file; backup.kit) as a restic snapshot of its own
tag, when it changed. The repository gets a second key whose password is the break-glass
passphrase; its user name carries a fingerprint of the break-glass file, so a re-keyed file
(`aini vault rekey-breakglass`) gets a key of the new passphrase and the old one is removed.
Whoever holds the repository's files can try passphrases offline against that key (restic's
scrypt) as against the break-glass file itself (README "Recovery")."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..backup import kit
from ..backup.runner import Say, fed, fed_bytes, run_ok
from ..catalog import backup as backup_catalog
from ..config import Backup, Images
from ..controlplane import breakglass
from ..controlplane.bootstrap import key_for
from ..docker import restic
from ..docker.cmd import Tools
from ..errors import AiniError, InputError
from ..project import Project, ensure_private, private_dir, write_private
from ..render.compose import pinned_ref
from ..sites.base import Site
from ..sites.local import LocalSite, find_tools
from .plan import check_repository

ENV_FILE = "restic.env"


def kit_files(project: Project) -> dict[str, bytes]:
    files = {kit.CONFIG: project.config_file.read_bytes()}
    for name in kit.PRIVATE:
        path = project.root / name
        if path.is_file():
            files[name] = path.read_bytes()
    return files


RECORD = "recovery-kit.json"  # on the site: the kit and the key last made current from there


def _wanted(project: Project, repo: restic.Repository) -> tuple[bytes, dict[str, str | None]]:
    """The kit's bytes, and what the site's record says once it and its key are current: the
    kit's fingerprint and the key's user name (project/fingerprint of the break-glass file;
    None in the age form, which has no passphrase)."""
    data = kit.pack(kit_files(project))
    path = private_dir(project.root) / breakglass.FILE_NAME
    user = None
    if isinstance(key_for(project.config), breakglass.Passphrase):
        user = f"{repo.host}/{hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else 'none'}"
    return data, {"kit": kit.fingerprint(data), "key": user}


def kit_current(project: Project, site: Site, repo: restic.Repository) -> bool:
    """Nothing to do: the kit is off, or the site's record says this kit and key are stored
    (so an unchanged kit costs no restic run)."""
    if not project.config.backup.recovery_kit:
        return True
    return site.read(RECORD) == json.dumps(_wanted(project, repo)[1], sort_keys=True)


def store_kit(project: Project, site: Site, tools: Tools, repo: restic.Repository, say: Say) -> None:
    """The kit stored when it changed, and the passphrase's key made current. A key that cannot
    be made (no passphrase at hand) is said, not fatal: the backup itself is done."""
    if not project.config.backup.recovery_kit:
        return
    data, wanted = _wanted(project, repo)
    r = site.run(restic.kit_snapshots_cmd(tools, repo))
    if r.returncode == 10:  # `aini up` before the first backup: the repository is made now
        run_ok(site, restic.init_cmd(tools, repo), "restic init")
    elif r.returncode != 0:
        raise AiniError(f"restic snapshots: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
    kits = restic.parse_kits(r.stdout)
    if not kits or kits[-1].fingerprint != wanted["kit"]:
        r = fed(site, restic.kit_backup_cmd(tools, repo, str(wanted["kit"])), data)
        if r.returncode != 0:
            raise AiniError(f"storing the recovery kit: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
        run_ok(site, restic.kit_forget_cmd(tools, repo), "restic forget (older recovery kits)")
        say("recovery kit (aini.yml and .aini/) stored in the repository")
    if wanted["key"] is None or _key_current(project, site, tools, repo, wanted["key"], say):
        site.write(RECORD, json.dumps(wanted, sort_keys=True))


def _key_current(project: Project, site: Site, tools: Tools, repo: restic.Repository, user: str, say: Say) -> bool:
    """The repository has a key of the break-glass passphrase named `user` (made now if not,
    an earlier one removed); False when the passphrase was not at hand."""
    keys = [k for k in restic.parse_keys(run_ok(site, restic.key_list_cmd(tools, repo), "restic key list"))
            if k.get("hostName") == restic.KIT_KEY_HOST and str(k.get("userName", "")).startswith(f"{repo.host}/")]
    if any(k.get("userName") == user for k in keys):
        return True
    key = key_for(project.config)
    assert isinstance(key, breakglass.Passphrase)
    path = private_dir(project.root) / breakglass.FILE_NAME
    if breakglass.passphrase_from_env(key.environ) is None:
        say("the repository gets a key of the break-glass passphrase too, for aini recover")  # before a prompt
    try:
        passphrase = key.get(new=not path.is_file())
        if path.is_file():
            breakglass.decrypt(path.read_bytes(), passphrase, source=str(path))  # the kit's file opens with it
    except InputError as exc:
        say(f"the recovery kit's key is not {'renewed' if keys else 'made'}: {exc}; until it is, aini recover "
            f"cannot open the repository with the {'current ' if keys else ''}passphrase")
        return False
    r = fed(site, restic.key_add_cmd(tools, repo, user), passphrase.encode() + b"\n")
    if r.returncode != 0:
        raise AiniError(f"adding the recovery kit's key: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
    for old in keys:  # an earlier passphrase's: it must not open the repository any more
        run_ok(site, restic.key_remove_cmd(tools, repo, str(old["id"])), "restic key remove")
    say("the repository now also opens with the break-glass passphrase (aini recover)")
    return True


@dataclass
class Recovered:
    project: str
    kit_time: str
    files: list[str]


def credentials_env(location: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """restic's env for `location` without a project: its credentials from AINI_SECRET_*."""
    try:
        Backup(repository=location)
    except ValueError:
        raise InputError(f"--repository: not a restic repository aini can use: {location!r} (s3:, rest: or an "
                         "absolute path)") from None
    check_repository("--repository", location)
    env, missing = {"RESTIC_REPOSITORY": location}, []
    for secret, variable, required in backup_catalog.CREDENTIALS.get(backup_catalog.scheme(location), ()):
        if value := environ.get(secret.env_var):
            env[variable] = value
        elif required:
            missing.append(secret.env_var)
    if missing:
        raise InputError(f"--repository needs {' and '.join(missing)} in the environment")
    return env


def recover(location: str, into: Path, project: str | None, key: breakglass.Passphrase, say: Say,
            image: str | None = None, environ: Mapping[str, str] = os.environ) -> Recovered:
    """aini.yml and .aini/ written into `into` (which has neither) from the latest kit of
    `project` (or the repository's only project), opened with the break-glass passphrase.
    restic runs on this machine's Docker engine, from the pinned image or `image`."""
    if (into / kit.CONFIG).exists() or private_dir(into).exists():
        raise InputError(f"{into} already holds aini.yml or .aini/; recover into an empty directory")
    env = credentials_env(location, environ)
    try:
        images = Images(overrides={backup_catalog.RESTIC.name: image} if image else {})
    except ValueError:
        raise InputError(f"--restic-image: {image!r} is not a pinned image reference (name:1.2.3 or "
                         "name@sha256:..., never 'latest')") from None
    passphrase = key.get(new=False)
    tools = find_tools(compose=False)
    with tempfile.TemporaryDirectory(prefix="aini-recover-") as scratch:
        site = LocalSite(Path(scratch))
        site.write(ENV_FILE, restic.env_file(env))
        repo = restic.Repository(pinned_ref(backup_catalog.RESTIC, images), str(Path(scratch) / ENV_FILE),
                                 host=project or "aini", path=location if location.startswith("/") else None)
        say(f"reading the recovery kits in {location}")
        r = fed(site, restic.kit_snapshots_cmd(tools, repo, by_passphrase=True, every_host=True),
                passphrase.encode() + b"\n")
        if r.returncode == 12:
            raise AiniError("the break-glass passphrase opens no key of this repository (a wrong passphrase, or "
                            "the kit's key was never made: aini backup makes it)")
        if r.returncode != 0:
            raise AiniError(f"reading the repository: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
        kits = restic.parse_kits(r.stdout)
        projects = sorted({host for _, host, _, _ in kits})
        if project is None and len(projects) > 1:
            raise InputError(f"the repository holds the kits of several projects ({', '.join(projects)}); "
                             "name one with --project")
        kits = [k for k in kits if project is None or k[1] == project]
        if not kits:
            raise AiniError(f"the repository holds no recovery kit{f' of {project}' if project else ''} "
                            "(backup.recovery_kit off, or no aini backup since it was on)")
        snapshot, host, when, _ = kits[-1]
        r = fed_bytes(site, restic.kit_dump_cmd(tools, repo, snapshot), passphrase.encode() + b"\n")
        if r.returncode != 0:
            raise AiniError(f"reading the recovery kit: {restic.error_line(r.returncode, '', r.stderr)}")
        data = r.stdout
    try:
        files = kit.unpack(data)
    except kit.KitError as exc:
        raise AiniError(f"the recovery kit of {host} cannot be used: {exc}") from None
    sealed = files.get(f"{kit.PRIVATE_DIR}/{breakglass.FILE_NAME}")
    if sealed is not None:  # before anything is written: a kit whose file this passphrase cannot open is no help
        breakglass.decrypt(sealed, passphrase, source=f"the kit's {breakglass.FILE_NAME}")
    private = ensure_private(private_dir(into))
    for name, content in files.items():
        if name == kit.CONFIG:
            (into / name).write_bytes(content)
        else:
            write_private(private / Path(name).name, content.decode())
    return Recovered(host, when, sorted(files))
