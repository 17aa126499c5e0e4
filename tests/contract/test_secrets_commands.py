"""`aini secrets list|get|rotate` as a user runs them, against the in-process Vault TEST
DOUBLE standing where the local target's Vault would be (bootstrapped as `aini up` does)."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from aini import catalog
from aini.cli import app
from aini.config import validate_data
from aini.controlplane import bootstrap
from aini.controlplane.vault import VaultClient
from aini.store import SecretStore
from aini.ops import secrets as vaultops
from aini.ops import up as ops_up
from aini.sites import local as sites_local
from tests.harness.doubles import import_double
from tests.unit.ops.test_secrets import on_a_terminal

vault_api = import_double("vault_api")
PASSPHRASE = {"AINI_BREAKGLASS_PASSPHRASE": "contract-test-passphrase"}
DATA = {"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"}}

# A separate process cannot be monkeypatched: this one points the local site's Vault at the
# double (its URL from the environment; an address, not a secret), then runs the CLI.
CLI_AT_DOUBLE = ("import os, sys; from aini.sites import local as sites_local; "
                 "sites_local.LocalSite.endpoint = lambda self, address, port: os.environ['AINI_TEST_VAULT_URL']; "
                 "from aini.cli import app; sys.argv[0] = 'aini'; app()")


@dataclass
class World:
    project: Path
    config: object
    vault_url: str
    client: VaultClient  # the deploy AppRole's, as `aini up` leaves it

    def store(self) -> SecretStore:
        return SecretStore(self.project / ".aini")

    def aini(self, *args: str):
        return CliRunner().invoke(app, ["-c", str(self.project / "aini.yml"), *args], env={"COLUMNS": "250"})

    def path(self, name: str) -> str:
        return bootstrap.secret_paths(catalog.enabled(self.config))[name]


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> Iterator[World]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "aini.yml").write_text(yaml.safe_dump(DATA))
    config = validate_data(DATA, "t")
    specs = catalog.enabled(config)
    store = SecretStore(project / ".aini")
    store.ensure(catalog.secrets_for(specs))
    store.save()
    server = vault_api.serve(tmp_path / "vault")
    try:
        client, _ = bootstrap.ensure_vault(VaultClient(server.url), project, [s.name for s in specs],
                                           bootstrap.Passphrase(environ=PASSPHRASE))
        assert bootstrap.sync_secrets(client, store, specs).pushed
        monkeypatch.setattr(sites_local.LocalSite, "endpoint", lambda self, address, port: server.url)
        yield World(project, config, server.url, client)
    finally:
        server.stop()


def generated_values(world: World) -> dict[str, str]:
    store = world.store()
    return {ref.name: store.get(ref.name) for ref in vaultops.secrets_of(world.config) if ref.kind == "generated"}


def test_list_gives_every_secret_by_name_and_whether_vault_holds_it_never_a_value(world: World):
    values = generated_values(world)
    assert len(values) > 5 and all(values.values())

    result = world.aini("secrets", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert sorted(r["name"] for r in rows) == sorted(r.name for r in vaultops.secrets_of(world.config))
    by_name = {r["name"]: r for r in rows}
    assert all(by_name[name]["in_vault"] for name in values)  # sync pushed every generated one
    assert by_name["openai_api_key"] == {"service": "librechat", "name": "openai_api_key", "kind": "user",
                                         "env": ["OPENAI_API_KEY"], "rotatable": True, "in_vault": False}
    assert by_name["n8n_encryption_key"]["rotatable"] is False

    table = world.aini("secrets", "list")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert len(lines) == len(rows)
    assert any(line.split()[:3] == ["n8n", "n8n_encryption_key", "generated"] and "never-rotate" in line
               for line in lines), table.output
    assert any(line.startswith("librechat") and "openai_api_key" in line and "NOT-IN-VAULT" in line
               for line in lines), table.output
    for output in (result.output, table.output):
        leaked = [name for name, value in values.items() if value in output]
        assert leaked == [], f"values of {leaked} in `secrets list`"


def test_get_prints_vaults_value_to_a_pipe(world: World):
    value = world.store().get("n8n_encryption_key")
    result = world.aini("secrets", "get", "n8n", "N8N_ENCRYPTION_KEY")
    assert result.exit_code == 0, result.output
    assert result.output == value + "\n"

    # Vault is the source of truth: a value changed there is what `get` reads, not the local copy.
    world.client.kv_put(world.path("librechat_jwt_secret"), {"value": "b" * 64})
    result = world.aini("secrets", "get", "librechat", "JWT_SECRET")
    assert result.exit_code == 0 and result.output == "b" * 64 + "\n", result.output

    unset = world.aini("secrets", "get", "librechat", "OPENAI_API_KEY")
    assert unset.exit_code == 1 and unset.output.strip() == "error: openai_api_key is not set in Vault"


def test_get_refuses_a_terminal_unless_shown(world: World):
    value = world.store().get("n8n_encryption_key")
    argv = [sys.executable, "-c", CLI_AT_DOUBLE, "-c", str(world.project / "aini.yml"),
            "secrets", "get", "n8n", "N8N_ENCRYPTION_KEY"]
    env = {**os.environ, "AINI_TEST_VAULT_URL": world.vault_url}

    code, shown, err = on_a_terminal(argv, world.project, env)
    assert code == 2 and "stdout is a terminal" in err, (code, err)
    assert value not in shown and value not in err

    code, shown, err = on_a_terminal([*argv, "--show"], world.project, env)
    assert code == 0, err
    assert shown.strip() == value


def test_a_successful_rotate_stores_a_new_value_in_vault_and_the_working_copy_then_redeploys(world, monkeypatch):
    path = world.path("librechat_jwt_secret")
    old = world.store().get("librechat_jwt_secret")
    version_before = world.client.kv_metadata(path).current_version
    redeploys: list[str | None] = []

    # The redeploy itself is the e2e tests' (a real stack); here: it runs once, after both
    # stores hold the new value, so the env files it renders carry it.
    def up_local(project):
        redeploys.append(SecretStore(project.aini_dir).get("librechat_jwt_secret"))
        return SimpleNamespace(touched=["librechat"])

    monkeypatch.setattr(ops_up, "up_local", up_local)
    result = world.aini("secrets", "rotate", "librechat", "JWT_SECRET")
    assert result.exit_code == 0, result.output
    assert result.output == "Rotated librechat_jwt_secret.\nRedeployed: librechat.\n"

    new = world.store().get("librechat_jwt_secret")
    assert new != old and len(new) == len(old) == 64
    assert world.client.kv_get(path) == {"value": new}
    assert world.client.kv_metadata(path).current_version == version_before + 1
    assert redeploys == [new]
    assert new not in result.output and old not in result.output
    # Only that secret changed.
    others = {k: v for k, v in generated_values(world).items() if k != "librechat_jwt_secret"}
    assert all(world.client.kv_get(world.path(k)) == {"value": v} for k, v in others.items())
