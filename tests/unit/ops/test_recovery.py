"""The recovery kit as the commands that keep it: stored when it changed, a key of the
break-glass passphrase made (and an earlier passphrase's removed), the passphrase on stdin
only; and `aini recover`'s refusals before anything runs."""

from __future__ import annotations

import json
import subprocess

import pytest

from aini.backup import kit
from aini.controlplane import breakglass
from aini.docker import restic
from aini.docker.cmd import Tools
from aini.errors import InputError
from aini.ops import recovery
from aini.project import Project

from ..conftest import config_of

PASSPHRASE = "correct horse battery staple"


class ScriptedSite:
    """Records what it is asked to run; restic answers from `kits` and `keys`."""

    def __init__(self, root, kits=(), keys=()):
        self.root, self.kits, self.keys = root, list(kits), list(keys)
        self.ran: list[tuple[tuple[str, ...], bytes]] = []
        self.files: dict[str, str] = {}

    def write(self, rel, text):
        self.files[rel] = text

    def read(self, rel):
        return self.files.get(rel)

    def remove(self, rel):
        self.files.pop(rel, None)

    def run(self, cmd):
        self.ran.append((cmd.argv, b""))
        out = json.dumps(self.kits) if "snapshots" in cmd.argv else json.dumps(self.keys) if "list" in cmd.argv else ""
        return subprocess.CompletedProcess(cmd.argv, 0, out, "")

    def stream(self, cmd, stdin=None, stdout=None):
        self.ran.append((cmd.argv, stdin.read() if stdin else b""))
        return subprocess.CompletedProcess(cmd.argv, 0, None, "")

    def verbs(self) -> list[str]:
        """restic's subcommand per run (`key add`, `key remove ID`)."""
        verbs = []
        for argv, _ in self.ran:
            args = argv[argv.index("restic/restic:0.18.0") + 1:]
            verbs.append(" ".join(args[:3 if args[1] == "remove" else 2]) if args[0] == "key" else args[0])
        return verbs


def _project(tmp_path, **backup) -> Project:
    (tmp_path / "aini.yml").write_text("project: demo\n")
    (tmp_path / ".aini").mkdir(mode=0o700)
    (tmp_path / ".aini" / "breakglass.enc").write_bytes(breakglass.encrypt(breakglass.BreakGlass(), PASSPHRASE,
                                                                            n=2**14))
    return Project(config_of(backup={"repository": "/var/backups/aini", **backup}), tmp_path, tmp_path / "aini.yml")


def _store(project: Project, site: ScriptedSite) -> list[str]:
    said: list[str] = []
    repo = restic.Repository("restic/restic:0.18.0", "/opt/aini/deployed/restic.env", host="demo")
    recovery.store_kit(project, site, Tools(("docker",), ()), repo, said.append)
    return said


def _user(project: Project) -> str:
    import hashlib

    return "demo/" + hashlib.sha256((project.root / ".aini" / "breakglass.enc").read_bytes()).hexdigest()[:12]


def test_the_first_kit_is_stored_and_the_passphrase_becomes_a_key_through_stdin_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("AINI_BREAKGLASS_PASSPHRASE", PASSPHRASE)
    project = _project(tmp_path)
    site = ScriptedSite(tmp_path)
    said = _store(project, site)
    assert site.verbs() == ["snapshots", "backup", "forget", "key list", "key add"]
    stored = site.ran[1]
    assert kit.unpack(stored[1]) == recovery.kit_files(project) and "aini.yml" in kit.unpack(stored[1])
    assert f"sha={kit.fingerprint(stored[1])}" in stored[0] and "aini-kit" in stored[0]
    add_argv, add_stdin = site.ran[4]
    assert add_stdin == PASSPHRASE.encode() + b"\n" and not any(PASSPHRASE in word for argv, _ in site.ran for word in argv)
    assert add_argv[add_argv.index("--user") + 1] == _user(project)
    assert said == ["recovery kit (aini.yml and .aini/) stored in the repository",
                    "the repository now also opens with the break-glass passphrase (aini recover)"]


def test_once_stored_an_unchanged_kit_costs_no_restic_run_and_a_changed_one_is_stored_again(tmp_path, monkeypatch):
    from aini.ops import backup

    monkeypatch.setenv("AINI_BREAKGLASS_PASSPHRASE", PASSPHRASE)
    project = _project(tmp_path)
    site = ScriptedSite(tmp_path)
    repo = restic.Repository("restic/restic:0.18.0", "/opt/aini/deployed/restic.env", host="demo")
    backup._kit(project, site, Tools(("docker",), ()), repo, lambda _: None, probe=True)
    assert site.verbs() == ["cat", "snapshots", "backup", "forget", "key list", "key add"]  # probe first
    assert set(site.files) == {recovery.RECORD}  # its journal (a kill is tidied by the next run) is gone
    assert recovery.kit_current(project, site, repo)
    backup._kit(project, site, Tools(("docker",), ()), repo, lambda _: None, probe=True)
    assert len(site.ran) == 6  # nothing ran
    (tmp_path / "aini.yml").write_text("project: demo\ndomain: changed.example\n")
    assert not recovery.kit_current(project, site, repo)


def test_a_key_not_made_leaves_no_record_so_the_next_run_tries_again(tmp_path, monkeypatch):
    monkeypatch.delenv("AINI_BREAKGLASS_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    project = _project(tmp_path)
    site = ScriptedSite(tmp_path)
    _store(project, site)
    assert site.files == {}


def test_an_unchanged_kit_and_a_current_key_cost_two_listings(tmp_path, monkeypatch):
    monkeypatch.delenv("AINI_BREAKGLASS_PASSPHRASE", raising=False)
    project = _project(tmp_path)
    fingerprint = kit.fingerprint(kit.pack(recovery.kit_files(project)))
    site = ScriptedSite(tmp_path, kits=[{"id": "a" * 64, "hostname": "demo", "time": "2026-11-28T01:00:00Z",
                                          "tags": ["aini-kit", f"sha={fingerprint}"]}],
                        keys=[{"id": "k1", "hostName": restic.KIT_KEY_HOST, "userName": _user(project)}])
    assert _store(project, site) == []
    assert site.verbs() == ["snapshots", "key list"]


def test_a_rekeyed_break_glass_file_gets_a_new_key_and_the_old_passphrases_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("AINI_BREAKGLASS_PASSPHRASE", PASSPHRASE)
    project = _project(tmp_path)
    site = ScriptedSite(tmp_path, keys=[{"id": "old1", "hostName": restic.KIT_KEY_HOST, "userName": "demo/0123"},
                                        {"id": "other", "hostName": restic.KIT_KEY_HOST, "userName": "elsewhere/1"},
                                        {"id": "main", "hostName": "vm", "userName": "root"}])
    _store(project, site)
    assert site.verbs()[-2:] == ["key add", "key remove old1"]  # another project's key and the main key stay


def test_without_the_passphrase_at_hand_the_kit_is_stored_and_the_missing_key_said(tmp_path, monkeypatch):
    monkeypatch.delenv("AINI_BREAKGLASS_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    project = _project(tmp_path)
    site = ScriptedSite(tmp_path)
    said = _store(project, site)
    assert site.verbs() == ["snapshots", "backup", "forget", "key list"]
    assert "the recovery kit's key is not made: the break-glass passphrase is needed" in said[-1]


def test_a_passphrase_that_does_not_open_the_break_glass_file_makes_no_key(tmp_path, monkeypatch):
    monkeypatch.setenv("AINI_BREAKGLASS_PASSPHRASE", "some other passphrase")
    project = _project(tmp_path)
    site = ScriptedSite(tmp_path)
    with pytest.raises(breakglass.BreakGlassError, match="wrong passphrase"):
        _store(project, site)
    assert "key add" not in site.verbs()


def test_with_the_kit_off_nothing_runs(tmp_path):
    site = ScriptedSite(tmp_path)
    assert _store(_project(tmp_path, recovery_kit=False), site) == [] and site.ran == []


def test_recover_refuses_bad_locations_missing_credentials_and_a_directory_in_use(tmp_path):
    with pytest.raises(InputError, match="not a restic repository aini can use"):
        recovery.credentials_env("-oProxyCommand=x", {})
    with pytest.raises(InputError, match="--repository: sftp: repositories are not supported yet"):
        recovery.credentials_env("sftp:u1@u1.your-storagebox.de:/aini", {})
    with pytest.raises(InputError, match="AINI_SECRET_BACKUP_S3_ACCESS_KEY and AINI_SECRET_BACKUP_S3_SECRET_KEY"):
        recovery.credentials_env("s3:https://fsn1.your-objectstorage.com/b/aini", {})
    env = recovery.credentials_env("s3:https://fsn1.your-objectstorage.com/b/aini", {
        "AINI_SECRET_BACKUP_S3_ACCESS_KEY": "AK", "AINI_SECRET_BACKUP_S3_SECRET_KEY": "SK"})
    assert env == {"RESTIC_REPOSITORY": "s3:https://fsn1.your-objectstorage.com/b/aini",
                   "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}
    (tmp_path / "aini.yml").write_text("project: x\n")
    with pytest.raises(InputError, match="recover into an empty directory"):
        recovery.recover("/srv/backup", tmp_path, None, breakglass.Passphrase({}), lambda _: None)


def test_the_kit_is_stored_inside_a_journal_so_a_kill_is_tidied_by_the_next_command(tmp_path, monkeypatch):
    from aini.ops import backup

    seen = []
    monkeypatch.setattr(recovery, "store_kit", lambda project, site, *_: seen.append(site.read(backup.JOURNAL)))
    site = ScriptedSite(tmp_path)
    repo = restic.Repository("restic/restic:0.18.0", "/opt/aini/deployed/restic.env", host="demo")
    backup._kit(_project(tmp_path), site, Tools(("docker",), ()), repo, lambda _: None)
    assert '"kind": "recovery kit"' in seen[0] and backup.JOURNAL not in site.files
