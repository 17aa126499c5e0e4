"""The CLI as a user meets it: a real `aini` process, exit codes, and no secret in any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aini.store import SecretStore

AINI = [sys.executable, "-m", "aini"]


def aini(*args: str, cwd: Path, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*AINI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, input=stdin, env={**os.environ, **(env or {})}
    )


@pytest.fixture
def initialised(tmp_path: Path) -> Path:
    result = aini("init", "--non-interactive", "--domain", "example.com", "--email", "admin@example.com", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_version_and_help(tmp_path):
    assert aini("--version", cwd=tmp_path).stdout.strip().startswith("aini ")
    help_text = aini("--help", cwd=tmp_path).stdout
    commands = {line.split()[0] for line in help_text.split("Commands:")[1].splitlines() if line.strip()}
    assert commands == {"init", "validate", "schema", "render", "plan", "up", "rollback", "status", "destroy", "backup", "restore",
                        "recover", "secrets", "vault"}


def test_init_writes_config_and_private_store(initialised):
    assert (initialised / "aini.yml").exists()
    store = initialised / ".aini" / "secrets.json"
    assert oct(store.stat().st_mode & 0o777) == "0o600"
    assert oct((initialised / ".aini").stat().st_mode & 0o777) == "0o700"
    assert (initialised / ".aini" / ".gitignore").read_text().strip().endswith("*")
    again = aini("init", "--non-interactive", "--domain", "example.com", "--email", "a@example.com", cwd=initialised)
    assert again.returncode == 2 and "--force" in again.stderr


def test_init_interactive_answers_prompts(tmp_path):
    result = aini("init", cwd=tmp_path, stdin="ssh\nexample.org\nme@example.org\nserver.example.org\nroot\n")
    assert result.returncode == 0, result.stderr
    assert "kind: ssh" in (tmp_path / "aini.yml").read_text()
    assert aini("validate", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--domain", "not a domain", "--email", "a@example.com"], "domain: must be a lowercase domain name"),
        (["--domain", "example.com", "--email", "a@example.com", "--disable", "excel"], "--disable: unknown service excel"),
        (["--domain", "example.com", "--email", "a@example.com", "--target", "ssh"], "the ssh target needs --host"),
        (["--email", "a@example.com"], "init needs --domain and --email"),
    ],
)
def test_init_bad_flags_exit_2(tmp_path, args, message):
    result = aini("init", "--non-interactive", *args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "aini.yml").exists()


def test_missing_config_is_exit_2_with_a_hint(tmp_path):
    result = aini("validate", cwd=tmp_path)
    assert result.returncode == 2 and "run 'aini init'" in result.stderr


def test_config_flag_reads_another_file(initialised, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = aini("-c", str(initialised / "aini.yml"), "validate", cwd=elsewhere)
    assert result.returncode == 0 and "15 containers" in result.stdout


def test_stack_too_big_for_the_server_is_a_clear_error(initialised):
    config = initialised / "aini.yml"
    config.write_text(config.read_text().replace("server_type: cx33", "server_type: cx23"))
    result = aini("plan", cwd=initialised)
    assert result.returncode == 2
    assert "cx23 has 4.0 GiB" in result.stderr and "choose cx33 or larger" in result.stderr and "disable onlyoffice" in result.stderr
    config.write_text(config.read_text().replace("onlyoffice:\n    enabled: true", "onlyoffice:\n    enabled: false"))
    assert aini("plan", cwd=initialised).returncode == 0


def test_plan_json_lists_services_urls_and_secret_names(initialised):
    result = aini("plan", "--json", cwd=initialised)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    urls = {s["name"]: s["url"] for s in plan["services"]}
    assert urls["librechat"] == "https://chat.example.com" and urls["nextcloud"] == "https://cloud.example.com"
    assert plan["fits"] is True and plan["budget"]["ram_mib"] == 8192
    assert {"n8n_encryption_key", "admin_password"} <= {s["name"] for s in plan["secrets"]}


def test_no_secret_in_any_output_or_file_outside_the_store_and_env_files(initialised):
    outputs = []
    for args in (["validate"], ["plan"], ["plan", "--json"], ["render"], ["render", "--out", "b2"], ["schema"]):
        result = aini(*args, cwd=initialised, env={"AINI_SECRET_OPENAI_API_KEY": "sk-test-OPENAI-0123456789"})
        assert result.returncode == 0, (args, result.stderr)
        outputs.append(result.stdout + result.stderr)
    values = SecretStore(initialised / ".aini").values()
    assert "sk-test-OPENAI-0123456789" in values  # taken from the environment into the store
    for output in outputs:
        assert not [v for v in values if v in output]
    for path in initialised.rglob("*"):
        if path.is_file() and path.name != "secrets.json" and not path.name.endswith(".env"):
            text = path.read_text(errors="replace")
            assert not [v for v in values if v in text], path
    for env in initialised.rglob("*.env"):
        assert oct(env.stat().st_mode & 0o777) == "0o600", env


def test_unexpected_errors_show_no_traceback(initialised):
    (initialised / ".aini" / "secrets.json").write_text("{not json")
    (initialised / ".aini" / "secrets.json").chmod(0o600)
    result = aini("render", cwd=initialised)
    assert result.returncode == 1 and "restore it from your backup" in result.stderr and "Traceback" not in result.stderr


def test_backup_commands_without_a_repository_say_so_with_exit_2(initialised):
    for args in (("backup",), ("backup", "list"), ("backup", "check"), ("restore", "n8n", "--confirm", "aini")):
        result = aini(*args, cwd=initialised)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "backup.repository is not set in aini.yml" in result.stderr and "Traceback" not in result.stderr


def test_backup_of_an_unknown_service_names_the_known_ones(initialised):
    text = (initialised / "aini.yml").read_text() + "backup:\n  repository: /var/backups/aini\n"
    (initialised / "aini.yml").write_text(text)
    result = aini("backup", "--only", "nextclod", cwd=initialised)
    assert result.returncode == 2 and "no enabled service or group named nextclod; known:" in result.stderr
    result = aini("backup", "check", "--read-data", "0", cwd=initialised)
    assert result.returncode == 2 and "--read-data: a percentage from 1 to 100" in result.stderr


def test_up_on_a_server_refuses_s3_backups_without_their_keys_before_touching_the_host(initialised):
    """The deploy ends by scheduling backups on the server: their credentials are checked
    first, so nothing is configured or deployed with a schedule that could not run."""
    (initialised / "aini.yml").write_text(
        "domain: example.com\nemail: admin@example.com\ntarget: {kind: ssh, host: 192.0.2.1}\n"
        "backup: {repository: 's3:https://fsn1.your-objectstorage.com/b/aini'}\n")
    env = {k: "" for k in os.environ if k.startswith("AINI_SECRET_")}
    result = aini("up", cwd=initialised, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "backup.repository needs AINI_SECRET_" in result.stderr and "Traceback" not in result.stderr
    assert not (initialised / ".aini" / "known_hosts").exists()  # no SSH connection was tried
