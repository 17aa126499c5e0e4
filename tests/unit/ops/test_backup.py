"""What restic is given: the repository, its password and credentials, for an env file; and
the inputs refused before anything runs."""

from __future__ import annotations

import pytest

from aini.errors import InputError
from aini.ops import backup
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
