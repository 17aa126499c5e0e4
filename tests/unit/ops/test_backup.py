"""What restic is given: the repository, its password and credentials, for an env file; the
inputs refused before anything runs; and what the next run does after a killed one (tidy),
as the commands it runs."""

from __future__ import annotations

import json
import subprocess

import pytest

from aini.deploy.versions import VersionChange

from aini.docker import restic
from aini.docker.cmd import Tools
from aini.errors import AiniError, InputError
from aini.backup import runner
from aini.ops import backup
from aini.sites.local import LocalSite
from aini.ops.plan import check
from aini.project import Project
from aini.store import SecretStore

from ..conftest import config_of


def project(tmp_path, repository: str | None) -> Project:
    return Project(config_of(backup={"repository": repository}), tmp_path)


def test_without_a_repository_backups_are_off_and_say_how_to_turn_them_on(tmp_path):
    with pytest.raises(InputError, match="backup.repository is not set in aini.yml") as caught:
        backup.repository_env(project(tmp_path, None))
    assert caught.value.exit_code == 2


def test_the_repository_password_is_generated_once_and_kept(tmp_path):
    first = backup.repository_env(project(tmp_path, "/var/backups/aini"))
    assert first["RESTIC_REPOSITORY"] == "/var/backups/aini" and len(first["RESTIC_PASSWORD"]) == 40
    assert SecretStore(tmp_path / ".aini").get("restic_password") == first["RESTIC_PASSWORD"]
    assert backup.repository_env(project(tmp_path, "/var/backups/aini")) == first


def test_s3_needs_both_keys_from_the_environment_once(tmp_path, monkeypatch):
    repo = "s3:https://fsn1.your-objectstorage.com/bucket/aini"
    monkeypatch.delenv("AINI_SECRET_BACKUP_S3_ACCESS_KEY", raising=False)
    monkeypatch.delenv("AINI_SECRET_BACKUP_S3_SECRET_KEY", raising=False)
    with pytest.raises(InputError, match="AINI_SECRET_BACKUP_S3_ACCESS_KEY and AINI_SECRET_BACKUP_S3_SECRET_KEY"):
        backup.repository_env(project(tmp_path, repo))
    monkeypatch.setenv("AINI_SECRET_BACKUP_S3_ACCESS_KEY", "AKIA-test")
    monkeypatch.setenv("AINI_SECRET_BACKUP_S3_SECRET_KEY", "s3-secret-test")
    env = backup.repository_env(project(tmp_path, repo))
    assert env["AWS_ACCESS_KEY_ID"] == "AKIA-test" and env["AWS_SECRET_ACCESS_KEY"] == "s3-secret-test"
    monkeypatch.delenv("AINI_SECRET_BACKUP_S3_ACCESS_KEY")
    monkeypatch.delenv("AINI_SECRET_BACKUP_S3_SECRET_KEY")
    assert backup.repository_env(project(tmp_path, repo)) == env  # kept in .aini/ from the first time


def test_a_rest_server_without_authentication_needs_no_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("AINI_SECRET_BACKUP_REST_USERNAME", raising=False)
    monkeypatch.delenv("AINI_SECRET_BACKUP_REST_PASSWORD", raising=False)
    env = backup.repository_env(project(tmp_path, "rest:https://backup.example.org:8000/aini"))
    assert set(env) == {"RESTIC_REPOSITORY", "RESTIC_PASSWORD"}


@pytest.mark.parametrize("repository", ["sftp:u123@u123.your-storagebox.de:/aini", "rclone:remote:aini"])
def test_repositories_aini_cannot_reach_yet_are_refused_by_name(repository):
    with pytest.raises(InputError, match="repositories are not supported yet; use s3:"):
        check(config_of(backup={"repository": repository}))


def test_a_run_is_named_by_its_utc_time():
    import datetime as dt

    assert backup.run_id(dt.datetime(2026, 11, 27, 3, 30, 5, tzinfo=dt.UTC)) == "20261127T033005Z"


def _replaying_site(tmp_path, listing: list[dict]):
    """A LocalSite whose commands are recorded, not run: restic answers with `listing`."""
    ran: list[tuple[str, ...]] = []

    def runner(cmd):
        ran.append(cmd.argv)
        out = json.dumps(listing) if "snapshots" in cmd.argv else ""
        return subprocess.CompletedProcess(cmd.argv, 0, out, "")

    return LocalSite(tmp_path / "site", runner), ran


def _tidy(tmp_path, journal: dict, listing: list[dict], restoring: bool = False):
    site, ran = _replaying_site(tmp_path, listing)
    site.write(backup.JOURNAL, json.dumps(journal))
    said: list[str] = []
    repo = restic.Repository("restic/restic:0.18.0", str(site.root / backup.ENV_FILE), host="aini")
    backup.tidy(project(tmp_path, "/var/backups/aini"), site, Tools(("docker",), ()), repo, said.append, restoring)
    return site, ran, said


def _row(sid: str, *tags: str) -> dict:
    return {"id": sid * 32, "time": "2026-11-27T03:00:00Z", "paths": ["/x"], "tags": ["aini", *tags]}


def test_a_killed_checks_journal_clears_the_locks_and_touches_no_service(tmp_path):
    site, ran, said = _tidy(tmp_path, {"kind": "check", "run": "r9", "groups": []}, [])
    assert [a[a.index("restic/restic:0.18.0") + 1:] if "restic/restic:0.18.0" in a else a[:2] for a in ran] == [
        ("docker", "ps"), ("unlock", "--remove-all"), ("snapshots", "--json", "--host", "aini", "--tag", "aini")]
    assert site.read(backup.JOURNAL) is None and said == [
        "an earlier check (run r9) was interrupted: its restic containers and locks are gone, 0 snapshots it left "
        "unfinished are forgotten"]


def test_a_restore_killed_after_its_safety_backup_blocks_backups_until_it_is_restored(tmp_path):
    journal = {"kind": "restore", "run": "r1", "safety_run": "r2", "groups": ["nextcloud"]}
    listing = [_row("a1", "service=mariadb", "run=r2", "safety"), _row("m2", "run=r2", "complete", "ok=mariadb",
                                                                       "safety")]
    with pytest.raises(AiniError, match=r"restore of nextcloud to run r1 was interrupted.*"
                                        r"aini restore nextcloud --snapshot r1\).*--snapshot r2"):
        _tidy(tmp_path, journal, listing)
    site, ran, said = _tidy(tmp_path, journal, listing, restoring=True)  # the restore itself goes on
    assert site.read(backup.JOURNAL) is None
    assert any(a[-2:] == ("maintenance:mode", "--off") or "maintenance:mode --off" in a[-1] for a in ran)


def test_the_unfinished_snapshots_of_a_killed_backup_are_forgotten_and_its_groups_put_back(tmp_path):
    journal = {"kind": "backup", "run": "r3", "groups": ["n8n", "nextcloud"]}
    listing = [_row("a1", "service=mariadb", "run=r1"), _row("m1", "run=r1", "complete", "ok=mariadb"),
               _row("a3", "service=mariadb", "run=r3"), _row("b3", "service=nextcloud", "run=r3")]
    site, ran, said = _tidy(tmp_path, journal, listing)
    forget = next(a for a in ran if "forget" in a)
    assert forget[forget.index("forget"):] == ("forget", "--json", "a3" * 32, "b3" * 32)
    assert ("docker", "start", "aini-n8n") in ran
    assert "2 snapshots it left unfinished are forgotten, n8n, nextcloud put back in service" in said[0]


def test_the_control_planes_tokens_come_from_aini_and_vaults_restore_from_the_break_glass_file(tmp_path,
                                                                                             monkeypatch):
    from aini.backup import scope
    from aini.controlplane import bootstrap, breakglass

    proj = project(tmp_path, "/var/backups/aini")
    chosen = scope.items(proj.config, ["vault", "consul", "mariadb"])
    assert backup._tokens(proj, chosen) == {}  # deployed before the snapshot tokens: none yet
    bootstrap.State(vault_snapshot_token="hvs.snap", consul_snapshot_token="consul-snap").save(tmp_path)
    assert backup._tokens(proj, chosen) == {"vault": "hvs.snap", "consul": "consul-snap"}
    monkeypatch.setenv("AINI_BREAKGLASS_PASSPHRASE", "a long enough test passphrase")
    key = bootstrap.key_for(proj.config)
    with pytest.raises(AiniError, match="restoring vault needs Vault's root token and .* holds no root token"):
        backup._tokens(proj, chosen, key)
    bootstrap.save_material(tmp_path, breakglass.BreakGlass().replace(vault_root_token="hvs.root"), key)
    assert backup._tokens(proj, chosen, key) == {"vault": "hvs.root", "consul": "consul-snap"}


def test_a_token_reaches_the_command_as_its_first_stdin_line_and_its_output_comes_back(tmp_path):
    from aini.docker.cmd import Cmd

    site = LocalSite(tmp_path)
    r = runner.run_fed(site, Cmd(("sh", "-c", 'IFS= read -r T; printf "%s|" "$T"; cat')), "tok en")
    assert (r.returncode, r.stdout) == (0, "tok en|")
    assert runner.run_fed(site, Cmd(("echo", "plain")), None).stdout == "plain\n"


def test_a_backup_of_a_control_plane_without_its_token_fails_that_service_alone(tmp_path):
    from aini.backup import scope

    proj = project(tmp_path, "/var/backups/aini")
    (vault,) = scope.items(proj.config, ["vault"])
    saved = runner.Saved("vault", "vault")
    repo = restic.Repository("restic/restic:0.18.0", str(tmp_path / "restic.env"))
    runner._save(LocalSite(tmp_path), Tools(("docker",), ()), repo, "r1", vault, saved, lambda _: None, False, None)
    assert saved.error == "no snapshot token for vault yet; run aini up once (it makes one)" and not saved.snapshots


def _changes(*services: str, moves: bool = False, major: bool = False) -> list[VersionChange]:
    return [VersionChange(s, f"{s}:1.0", f"{s}:2.0", moves=moves, major=major or moves) for s in services]


def test_the_backup_before_an_update_covers_the_changed_groups_and_a_failure_updates_nothing(tmp_path, monkeypatch):
    said: list[str] = []
    assert backup.before_update(project(tmp_path, None), None, _changes("n8n"), said.append) == {}
    assert said == ["! no backup before updating n8n: backup.repository is not set"]
    said.clear()
    assert backup.before_update(project(tmp_path, "/srv/restic"), None, _changes("onlyoffice"), said.append) == {}
    assert said == []  # OnlyOffice holds nothing
    runs: list[tuple] = []

    def run(project_, only, say, site):
        runs.append(tuple(only))
        return runner.RunResult("20261128T120000Z", [runner.Saved("mariadb", "nextcloud", error="mariadb-dump: exit 2")], {}, {})
    monkeypatch.setattr(backup, "backup", run)
    with pytest.raises(AiniError, match="(?s)the backup before updating librechat, nextcloud failed, so nothing was "
                                        "updated:\n  - mariadb: mariadb-dump: exit 2"):
        backup.before_update(project(tmp_path, "/srv/restic"), None, _changes("mongodb", "mariadb"), said.append)
    assert runs == [("librechat", "nextcloud")]
    monkeypatch.setattr(backup, "backup", lambda p, only, say, site: runner.RunResult("R", [runner.Saved("n8n", "n8n")], {}, {}))
    backs = backup.before_update(project(tmp_path, "/srv/restic"), None, _changes("n8n"), said.append)
    assert list(backs) == ["n8n"] and backs["n8n"].run == "R" and said[-1] == "backed up n8n before the update: run R" and backs["n8n"].move is None


def test_a_major_that_moves_its_data_gets_its_move_and_a_fresh_cluster_on_the_way_back(tmp_path, monkeypatch):
    proj = Project(config_of(backup={"repository": "/srv/restic"}, services={"n8n": {"database": "postgres"}}),
                   tmp_path)
    monkeypatch.setattr(backup, "backup", lambda p, only, say, site: runner.RunResult(
        "R", [runner.Saved("n8n-postgres", "n8n"), runner.Saved("n8n", "n8n")], {}, {}))
    [change] = _changes("n8n-postgres", moves=True)
    backs = backup.before_update(proj, None, [change], lambda _: None)
    assert backs["n8n"].set_aside.func is backup.set_aside and backs["n8n"].move.func is backup.move
    assert backs["n8n"].move.args[-2] == {"n8n-postgres": "n8n-postgres:1.0"}  # service -> the image that wrote it
    assert backs["n8n"].put_back.args[-1] == ("n8n-postgres",)  # emptied for the old major's new cluster


def test_a_major_that_moves_its_data_is_refused_without_a_repository(tmp_path):
    from aini.backup import scope

    config = project(tmp_path, None).config
    assert scope.moves_refused(config, []) is None
    assert scope.moves_refused(config, ["n8n-postgres"]).startswith(
        "n8n-postgres: the new major takes the data through the backup before the update")
    assert scope.moves_refused(project(tmp_path, "/srv/restic").config, ["n8n-postgres"]) is None


def test_a_failed_mariadb_major_goes_back_onto_an_emptied_volume(tmp_path, monkeypatch):
    monkeypatch.setattr(backup, "backup", lambda p, only, say, site: runner.RunResult(
        "R", [runner.Saved("mariadb", "nextcloud"), runner.Saved("nextcloud", "nextcloud")], {}, {}))
    backs = backup.before_update(project(tmp_path, "/srv/restic"), None, _changes("mariadb", major=True), lambda _: None)
    assert backs["nextcloud"].put_back.args[-1] == ("mariadb",) and backs["nextcloud"].move is None
    backs = backup.before_update(project(tmp_path, "/srv/restic"), None, _changes("mariadb"), lambda _: None)
    assert backs["nextcloud"].put_back.args[-1] == ()  # within a series: the old server reads the data


def test_the_check_after_an_update_runs_the_catalogs_verify_in_the_running_container(tmp_path):
    seen: list[tuple[str, ...]] = []

    def run(cmd):
        seen.append(cmd.argv)
        empty = "aini-mariadb" in cmd.argv
        return subprocess.CompletedProcess(cmd.argv, 1 if empty else 0, "0 tables in nextcloud" if empty else "3 workflows", "")
    proj = Project(config_of(services={"n8n": {"database": "postgres"}}), tmp_path)
    said: list[str] = []
    backup.verify(proj, LocalSite(tmp_path, run), ["n8n-postgres", "onlyoffice"], said.append)
    assert [argv[:6] for argv in seen] == [("docker", "exec", "-u", "root", "aini-n8n-postgres", "sh")]
    assert said == ["n8n-postgres: checked after the update: 3 workflows"]
    with pytest.raises(AiniError, match=r"^mariadb: 0 tables in nextcloud$"):
        backup.verify(proj, LocalSite(tmp_path, run), ["mariadb"], said.append)
