"""restic commands as data and the parsers of restic 0.18's real output (captured in
restic/, see its README); the pipe runs in a real bash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aini.docker import restic
from aini.docker.cmd import Cmd, Tools

CAPTURED = Path(__file__).parent / "restic"
TOOLS = Tools(("docker",), ())
REPO = restic.Repository("restic/restic:0.18.0", "/opt/aini/backup/restic.env")


def test_a_volume_backup_mounts_read_only_and_takes_secrets_from_the_env_file():
    cmd = restic.backup_volumes_cmd(TOOLS, REPO, "n8n", "20261127T033000Z", ["aini-n8n-data"])
    assert cmd.argv == (
        "docker", "run", "--rm", "--label", "aini.restic=aini", "--env-file", "/opt/aini/backup/restic.env",
        "-e", "RESTIC_CACHE_DIR=/cache", "-v", "aini-restic-cache:/cache", "-v", "aini-n8n-data:/data/n8n/aini-n8n-data:ro", "restic/restic:0.18.0",
        "backup", "--json", "--host", "aini", "--tag", "aini", "--tag", "service=n8n", "--tag", "run=20261127T033000Z",
        "/data/n8n",
    )


def test_a_repository_on_a_path_is_mounted_at_the_same_path():
    repo = restic.Repository("restic/restic:0.18.0", "/srv/restic.env", path="/var/backups/aini")
    cmd = restic.snapshots_cmd(TOOLS, repo)
    assert cmd.argv[cmd.argv.index("/var/backups/aini:/var/backups/aini") - 1] == "-v"
    assert cmd.argv[cmd.argv.index(repo.image) + 1:] == ("snapshots", "--json", "--host", "aini", "--tag", "aini")


def test_a_dump_is_read_from_stdin_under_a_bare_file_name():
    cmd = restic.backup_stdin_cmd(TOOLS, REPO, "mariadb", "r1", "nextcloud.sql")
    assert "-i" in cmd.argv[: cmd.argv.index(REPO.image)]
    assert cmd.argv[-3:] == ("--stdin", "--stdin-filename", "nextcloud.sql")
    assert cmd.argv[cmd.argv.index("--stdin-filename") + 1] == "nextcloud.sql"
    with pytest.raises(ValueError, match="bare file name"):
        restic.backup_stdin_cmd(TOOLS, REPO, "mariadb", "r1", "mariadb/nextcloud.sql")


def test_retention_forgets_the_snapshots_it_is_given_and_prunes_apart():
    cmd = restic.forget_cmd(TOOLS, REPO, ["a" * 64, "b" * 64])
    assert cmd.argv[cmd.argv.index(REPO.image) + 1:] == ("forget", "--json", "a" * 64, "b" * 64)
    assert restic.prune_cmd(TOOLS, REPO).argv[-2:] == ("prune", "--json")


def test_a_runs_manifest_vouches_for_its_services_by_tag_and_is_listed_apart_from_them():
    cmd = restic.manifest_cmd(TOOLS, REPO, "r1", ["mariadb", "nextcloud"], safety=True)
    assert cmd.argv[cmd.argv.index(REPO.image) + 1:] == (
        "backup", "--json", "--host", "aini", "--tag", "aini", "--tag", "run=r1", "--tag", "complete",
        "--tag", "ok=mariadb", "--tag", "ok=nextcloud", "--tag", "safety", "--stdin",
        "--stdin-filename", "aini-run.json")
    assert "-i" in cmd.argv
    listed = [{"id": "m" * 64, "short_id": "mmmmmmmm", "time": "2026-11-27T03:00:00Z", "paths": ["/aini-run.json"],
               "tags": ["aini", "run=r1", "complete", "ok=mariadb", "ok=nextcloud"]},
              {"id": "n" * 64, "time": "2026-11-27T03:00:00Z", "tags": ["aini", "service=", "run=r2"]},
              {"id": "o" * 64, "time": "2026-11-27T03:00:00Z", "tags": ["run=r3", "complete", "ok=n8n"]}]
    (manifest,) = restic.parse_snapshots(json.dumps(listed))  # an empty service= and a foreign one are left out
    assert manifest.manifest and manifest.service == "" and manifest.run == "r1"
    assert restic.complete([manifest]) == {"r1": frozenset({"mariadb", "nextcloud"})}


def test_after_a_killed_run_its_containers_are_found_by_label_and_every_lock_removed():
    assert restic.leftovers_cmd(TOOLS, REPO).argv == ("docker", "ps", "-q", "--filter", "label=aini.restic=aini")
    assert restic.remove_containers_cmd(TOOLS, ["c1", "c2"]).argv == ("docker", "rm", "-f", "c1", "c2")
    assert restic.unlock_cmd(TOOLS, REPO).argv[-2:] == ("unlock", "--remove-all")


def test_a_restore_writes_the_service_volumes_back_and_deletes_what_the_snapshot_lacks():
    cmd = restic.restore_volumes_cmd(TOOLS, REPO, "f0774d4e", "n8n", ["aini-n8n-data"])
    assert "aini-n8n-data:/data/n8n/aini-n8n-data" in cmd.argv  # writable
    assert cmd.argv[cmd.argv.index(REPO.image) + 1:] == (
        "restore", "f0774d4e", "--target", "/", "--include", "/data/n8n", "--delete")


def test_check_reads_a_subset_of_the_data_when_asked():
    assert restic.check_cmd(TOOLS, REPO).argv[-1] == "check"
    assert restic.check_cmd(TOOLS, REPO, 5).argv[-3:] == ("check", "--read-data-subset", "5%")


def test_no_secret_and_no_repository_location_in_any_argv():
    repo = restic.Repository("restic/restic:0.18.0", "/opt/aini/backup/restic.env")
    for cmd in (restic.init_cmd(TOOLS, repo), restic.snapshots_cmd(TOOLS, repo),
                restic.dump_cmd(TOOLS, repo, "latest", "nextcloud.sql"), restic.unlock_cmd(TOOLS, repo),
                restic.manifest_cmd(TOOLS, repo, "r1", ["n8n"])):
        text = " ".join(cmd.argv)
        assert "RESTIC_PASSWORD" not in text and "s3:" not in text and "AWS_" not in text
        assert "--env-file /opt/aini/backup/restic.env" in text


def test_snapshots_are_parsed_from_restics_output_oldest_first():
    snaps = restic.parse_snapshots((CAPTURED / "snapshots.json").read_text())
    assert [s.service for s in snaps] == ["n8n", "mariadb", "n8n"]
    assert all(len(s.id) == 64 and s.id.startswith(s.short_id) for s in snaps)
    assert snaps[0].paths == ("/data/n8n",) and snaps[1].paths == ("/nextcloud.sql",)
    assert snaps[1].size == len("CREATE TABLE t (i int);\n")
    assert snaps[0].time < snaps[1].time < snaps[2].time and snaps[0].time.tzinfo is not None
    assert restic.complete(snaps) == {}  # captured before runs had manifests


def test_snapshots_of_others_and_damaged_output_are_left_out():
    foreign = [{"id": "a" * 64, "short_id": "aaaaaaaa", "time": "2026-01-01T00:00:00Z", "tags": ["mine"]}]
    assert restic.parse_snapshots(json.dumps(foreign)) == []
    assert restic.parse_snapshots("not json") == [] and restic.parse_snapshots("") == []


def test_the_summary_names_the_snapshot_a_backup_made():
    for name in ("backup-volumes.jsonl", "backup-stdin.jsonl"):
        summary = restic.parse_summary((CAPTURED / name).read_text())
        assert summary and len(summary["snapshot_id"]) == 64
    assert restic.parse_summary((CAPTURED / "backup-command-failed.jsonl").read_text()) is None


@pytest.mark.parametrize(("name", "code", "line"), [
    ("wrong-password.jsonl", 12, "wrong password or no key found"),
    ("no-repository.jsonl", 10, "repository does not exist: unable to open config file: stat /tmp/w/none/config: "
                                "no such file or directory"),
    ("backup-command-failed.jsonl", 1, "unable to save snapshot: failed to save /n8n.pgdump: Fatal: command failed: "
                                       "exit status 3"),
])
def test_errors_are_one_line_from_restics_own_message(name, code, line):
    assert restic.error_line(code, (CAPTURED / name).read_text(), "") == line


def test_errors_without_a_message_say_what_the_exit_code_means():
    assert restic.error_line(11, "", "unable to create lock in backend") == \
        "the repository is locked by another restic process"
    assert restic.error_line(1, "", "boom\n") == "failed: boom"
    assert restic.error_line(77, "", "") == "exit 77"


def run(cmd: Cmd, data: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd.argv), input=data, capture_output=True, timeout=30)


def test_the_pipe_passes_bytes_and_fails_when_either_side_fails():
    ok = run(restic.pipe_cmd(Cmd(("printf", "%s", "a b;$(x)")), Cmd(("cat",))))
    assert ok.returncode == 0 and ok.stdout == b"a b;$(x)"  # no word of either argv was parsed
    assert run(restic.pipe_cmd(Cmd(("sh", "-c", "echo partial; exit 3")), Cmd(("cat",)))).returncode == 3
    assert run(restic.pipe_cmd(Cmd(("echo", "x")), Cmd(("sh", "-c", "cat >/dev/null; exit 4")))).returncode == 4


def test_the_env_file_is_literal_lines_and_refuses_what_docker_would_cut():
    text = restic.env_file({"RESTIC_REPOSITORY": "s3:https://fsn1.example.com/bucket/aini",
                            "RESTIC_PASSWORD": "p'a\"s s=$x"})
    assert text == "RESTIC_REPOSITORY=s3:https://fsn1.example.com/bucket/aini\nRESTIC_PASSWORD=p'a\"s s=$x\n"
    for bad in ({"RESTIC_PASSWORD": "a\nB=c"}, {"RESTIC_PASSWORD": "a\rb"}, {"restic": "x"}, {"A-B": "x"}):
        with pytest.raises(ValueError):
            restic.env_file(bad)


def test_the_first_contact_is_a_lock_free_read_with_a_name_to_remove_it_by_and_a_bound():
    cmd = restic.probe_cmd(TOOLS, REPO, "aini-restic-probe-1")
    assert cmd.argv[:5] == ("docker", "run", "--rm", "--name", "aini-restic-probe-1")
    assert cmd.argv[-3:] == ("cat", "config", "--no-lock") and cmd.timeout == restic.PROBE_TIMEOUT


def test_the_reason_of_restics_last_retry_is_what_an_unreachable_repository_says():
    # captured from restic 0.18 against SeaweedFS with a wrong secret key, then a closed port
    stderr = ("Stat(<config/>) returned error, retrying after 606.563334ms: Stat: The request signature we "
              "calculated does not match the signature you provided. Check your key and signing method.\n"
              'Stat(<config/>) returned error, retrying after 2.107525509s: Stat: Get "http://172.17.0.1:18333/'
              'aini-test/?location=": dial tcp 172.17.0.1:18333: connect: connection refused\ntimed out after 60s')
    assert restic.last_retry(stderr).endswith("connect: connection refused")
    assert restic.last_retry("timed out after 60s") == ""
