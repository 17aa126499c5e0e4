"""`aini secrets`: which secret a KEY names, what may be rotated, values never from argv."""
from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest
import yaml

from aini.ops import secrets as vaultops
from aini.config import validate_data
from aini.errors import InputError

CONFIG = validate_data({"domain": "example.com", "email": "a@example.com"}, "t")


def test_a_key_is_the_secret_name_or_an_env_variable_that_carries_it():
    assert vaultops.resolve(CONFIG, "librechat", "OPENAI_API_KEY").name == "openai_api_key"
    assert vaultops.resolve(CONFIG, "librechat", "openai_api_key").kind == "user"
    creds = vaultops.resolve(CONFIG, "librechat", "CREDS_KEY")
    assert creds.name == "librechat_creds_key" and not creds.rotatable and "CREDS_KEY" in creds.env
    with pytest.raises(InputError, match="librechat has no secret NOPE; its secrets: .*OPENAI_API_KEY"):
        vaultops.resolve(CONFIG, "librechat", "NOPE")
    with pytest.raises(InputError, match="no enabled service 'chat'"):
        vaultops.resolve(CONFIG, "chat", "X")


def test_rotation_refuses_what_would_lose_data_or_lock_a_service_out():
    with pytest.raises(InputError, match="must not be rotated.*--force"):
        vaultops.rotate_value(CONFIG, vaultops.resolve(CONFIG, "librechat", "CREDS_KEY"), force=False)
    forced = vaultops.rotate_value(CONFIG, vaultops.resolve(CONFIG, "librechat", "CREDS_KEY"), force=True)
    assert len(forced) == 64 and set(forced) <= set("0123456789abcdef")
    with pytest.raises(InputError, match="must not be rotated"):
        vaultops.rotate_value(CONFIG, vaultops.resolve(CONFIG, "n8n", "N8N_ENCRYPTION_KEY"), force=False)
    with pytest.raises(InputError, match="inside mariadb's data"):
        vaultops.rotate_value(CONFIG, vaultops.resolve(CONFIG, "mariadb", "MARIADB_PASSWORD"), force=True)
    with pytest.raises(InputError, match="provided by you"):
        vaultops.rotate_value(CONFIG, vaultops.resolve(CONFIG, "librechat", "OPENAI_API_KEY"), force=False)
    new = vaultops.rotate_value(CONFIG, vaultops.resolve(CONFIG, "librechat", "JWT_SECRET"), force=False)
    assert len(new) == 64


def on_a_terminal(argv: list[str], cwd, env: dict | None = None) -> tuple[int, str, str]:
    """Run argv with stdout on a pseudo-terminal (stdin empty, stderr a pipe): exit code,
    what reached the terminal, stderr."""
    master, slave = pty.openpty()
    with subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave,
                          stderr=subprocess.PIPE) as proc:
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        err = proc.stderr.read()
        code = proc.wait(60)
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def test_cli_secrets_take_no_value_in_argv_and_get_refuses_a_terminal(tmp_path):
    (tmp_path / "aini.yml").write_text(yaml.safe_dump({"domain": "localhost", "email": "a@example.com",
                                                         "target": {"kind": "local"}}))

    def aini(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "aini", *args], cwd=tmp_path, capture_output=True, text=True,
                              input=stdin, timeout=60)

    r = aini("secrets", "set", "librechat", "OPENAI_API_KEY", "sk-in-argv")
    assert r.returncode == 2 and "Got unexpected extra argument" in r.stderr + r.stdout
    r = aini("secrets", "set", "librechat", "NOPE", stdin="x\n")
    assert r.returncode == 2 and "librechat has no secret NOPE" in r.stderr and "Traceback" not in r.stderr
    r = aini("secrets", "rotate", "n8n", "N8N_ENCRYPTION_KEY")
    assert r.returncode == 2 and "must not be rotated" in r.stderr

    # The refusal comes before Vault is asked: nothing is deployed here, and the message is
    # about the terminal, not about Vault.
    code, shown, err = on_a_terminal([sys.executable, "-m", "aini", "secrets", "get", "n8n", "N8N_ENCRYPTION_KEY"],
                                     cwd=tmp_path)
    assert code == 2 and shown == "", (code, shown, err)
    assert "stdout is a terminal: pipe it (aini secrets get S K | ...) or add --show" in err
    r = aini("secrets", "get", "n8n", "N8N_ENCRYPTION_KEY")  # a pipe passes the check and reaches Vault's lookup
    assert r.returncode != 0 and "stdout is a terminal" not in r.stderr and "Traceback" not in r.stderr
