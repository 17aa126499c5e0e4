"""The age form of the break-glass file (`services.vault.age_recipients`): sealed with public
keys only, opened with the identity file of AINI_BREAKGLASS_AGE_IDENTITY, interoperable with
the `age` CLI, and convertible to and from the passphrase form."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest
import yaml

from aini.config import validate_data
from aini.controlplane import bootstrap
from aini.controlplane import breakglass as bg
from aini.controlplane.vault import VaultClient
from aini.errors import ConfigError, InputError
from tests.harness.doubles import import_double

vault_api = import_double("vault_api")

SECRET = "s3cret-AGE-7c1d"
MATERIAL = bg.BreakGlass(vault_unseal_keys=("key-one-" + SECRET, "key-two-" + SECRET),
                         vault_root_token="hvs.ROOT-" + SECRET, consul_bootstrap_token="consul-" + SECRET)
PASSPHRASE = "correct horse battery staple"
ENV = bg.ENV_AGE_IDENTITY


def identity_file(path: Path, identity: pyrage.x25519.Identity | None = None, mode: int = 0o600) -> Path:
    """As age-keygen writes it: comment lines, then the secret key."""
    identity = identity or pyrage.x25519.Identity.generate()
    path.write_text(f"# created: 2025-01-01T00:00:00Z\n# public key: {identity.to_public()}\n{identity}\n")
    path.chmod(mode)
    return path


def public(path: Path) -> str:
    return next(line.split(": ")[1] for line in path.read_text().splitlines() if line.startswith("# public key"))


def config(*recipients: str):
    return validate_data({"domain": "example.com", "email": "a@example.com",
                          "services": {"vault": {"age_recipients": list(recipients)}}}, "aini.yml")


def no_secret_in(data: bytes | str) -> bool:
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return SECRET not in text


# ------------------------------------------------------------------------- sealing and opening


def test_round_trip_needs_only_public_keys_to_seal(tmp_path):
    ident = identity_file(tmp_path / "id.txt")
    data = bg.AgeKey((public(ident),), environ={}).seal(MATERIAL)  # no identity anywhere in sight
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n") and no_secret_in(data)
    assert bg.AgeKey((), environ={ENV: str(ident)}).open(data, "f") == MATERIAL
    key = bg.AgeKey((public(ident),), environ={ENV: str(ident)})
    assert str(ident) not in repr(key) and SECRET not in repr(MATERIAL)


def test_every_recipient_opens_it_alone(tmp_path):
    idents = [identity_file(tmp_path / f"id{i}.txt") for i in range(3)]
    data = bg.AgeKey(tuple(public(i) for i in idents), environ={}).seal(MATERIAL)
    bg.check_age_header(data, 3, "f")
    for ident in idents:
        assert bg.AgeKey((), environ={ENV: str(ident)}).decrypt(data, "f") == MATERIAL


def test_a_wrong_identity_is_named_as_such(tmp_path):
    data = bg.AgeKey((public(identity_file(tmp_path / "right.txt")),), environ={}).seal(MATERIAL)
    wrong = identity_file(tmp_path / "wrong.txt")
    with pytest.raises(bg.BreakGlassError, match=f"^no identity in {wrong} matches the-file") as info:
        bg.AgeKey((), environ={ENV: str(wrong)}).open(data, "the-file")
    assert info.value.exit_code == 1


@pytest.mark.parametrize("damage", ["payload", "truncated", "not-age"])
def test_a_damaged_file_is_refused(tmp_path, damage):
    ident = identity_file(tmp_path / "id.txt")
    data = bg.AgeKey((public(ident),), environ={}).seal(MATERIAL)
    lines = data.decode().splitlines()
    if damage == "payload":  # a base64 character of the last body line: inside the encrypted payload
        body = lines[-2]
        lines[-2] = ("B" if body[0] == "A" else "A") + body[1:]
        data = ("\n".join(lines) + "\n").encode()
    elif damage == "truncated":
        data = ("\n".join(lines[:-2] + lines[-1:]) + "\n").encode()
    else:
        data = b'{"format": "aini-breakglass"}'
    with pytest.raises(bg.BreakGlassError, match="damaged or was tampered with"):
        bg.AgeKey((), environ={ENV: str(ident)}).open(data, "f")
    if damage == "not-age":  # the header check (no identity at hand) sees only this one
        with pytest.raises(bg.BreakGlassError, match="damaged"):
            bg.check_age_header(data, 1, "f")


def test_the_identity_file_must_be_private_named_and_well_formed(tmp_path):
    data = bg.AgeKey((public(identity_file(tmp_path / "id.txt")),), environ={}).seal(MATERIAL)

    def open_with(environ: dict[str, str]) -> bg.BreakGlass:
        return bg.AgeKey((), environ=environ).open(data, "f")

    with pytest.raises(InputError, match=ENV) as info:
        open_with({})
    assert info.value.exit_code == 2
    (tmp_path / "id.txt").chmod(0o640)
    with pytest.raises(InputError, match=r"readable by others \(mode 640\); run: chmod 600 ") as info:
        open_with({ENV: str(tmp_path / "id.txt")})
    assert info.value.exit_code == 2
    with pytest.raises(InputError, match="does not exist"):
        open_with({ENV: str(tmp_path / "missing.txt")})
    bad = tmp_path / "bad.txt"
    bad.write_text("# a comment\nAGE-SECRET-KEY-1NOTAKEY" + SECRET + "\n")
    bad.chmod(0o600)
    with pytest.raises(InputError, match="line 2 is not an age X25519 identity") as info:
        open_with({ENV: str(bad)})
    assert SECRET not in str(info.value)


# --------------------------------------------------------------------------------- config


def test_recipients_are_validated_at_load_naming_the_field(tmp_path):
    good = str(pyrage.x25519.Identity.generate().to_public())
    assert config(good).services.vault.age_recipients == [good]
    assert config().services.vault.age_recipients == []
    for bad in ("age1notakey", "ssh-ed25519 AAAAC3Nza", good.replace("age1", "agf1")):
        with pytest.raises(ConfigError) as info:
            config(good, bad)
        assert info.value.exit_code == 2
        (problem,) = info.value.problems
        assert problem == f"services.vault.age_recipients: {bad!r} is not an age X25519 recipient (age1..., as " \
                          "printed by age-keygen)"
    assert isinstance(bootstrap.key_for(config(good)), bg.AgeKey)
    assert isinstance(bootstrap.key_for(config()), bg.Passphrase)


def test_a_bad_recipient_in_aini_yml_is_exit_2(tmp_path):
    project = _project(tmp_path, ["age1notakey"])
    result = aini("validate", cwd=project)
    assert result.returncode == 2 and "services.vault.age_recipients: 'age1notakey' is not an age" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------- through bootstrap


def test_load_and_save_material_with_age_config(tmp_path):
    ident = identity_file(tmp_path / "id.txt")
    key = bootstrap.key_for(config(public(ident)), environ={})
    bootstrap.save_material(tmp_path, MATERIAL, key)  # no identity, no variable: nothing asked
    path = tmp_path / ".aini" / "breakglass.age"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and no_secret_in(path.read_bytes())
    assert sorted(p.name for p in path.parent.iterdir()) == ["breakglass.age"]
    # What this process wrote, it reads back without the identity (Consul's token after Vault's keys).
    updated = bootstrap.load_material(tmp_path, key).replace(consul_bootstrap_token="consul-2-" + SECRET)
    bootstrap.save_material(tmp_path, updated, key)
    later = bootstrap.key_for(config(public(ident)), environ={})  # the next command
    with pytest.raises(InputError, match=ENV):
        bootstrap.load_material(tmp_path, later)
    again = bootstrap.key_for(config(public(ident)), environ={ENV: str(ident)})
    assert bootstrap.load_material(tmp_path, again) == updated


def test_a_first_deploy_with_age_asks_nothing_and_unsealing_needs_the_identity(tmp_path):
    ident = identity_file(tmp_path / "id.txt")
    project = tmp_path / "project"
    server = vault_api.serve(tmp_path / "vault")
    try:
        key = bootstrap.key_for(config(public(ident)), environ={})
        _client, outcome = bootstrap.ensure_vault(VaultClient(server.url), project, ["n8n"], key)
        assert (outcome.initialised, outcome.bootstrapped) == (True, True)
        bootstrap.save_material(project, bootstrap.load_material(project, key).replace(
            consul_bootstrap_token="consul-" + SECRET), key)
    finally:
        server.stop()
    assert not (project / ".aini" / "breakglass.enc").exists()
    restarted = vault_api.serve(tmp_path / "vault")
    try:
        client = VaultClient(restarted.url)
        with pytest.raises(InputError, match=ENV):
            bootstrap.unseal(client, project, bootstrap.key_for(config(public(ident)), environ={}))
        assert bootstrap.unseal(client, project, bootstrap.key_for(config(public(ident)), environ={ENV: str(ident)}))
    finally:
        restarted.stop()
    material = bg.AgeKey((), environ={ENV: str(ident)}).open((project / ".aini" / "breakglass.age").read_bytes(), "f")
    assert len(material.vault_unseal_keys) == 5 and material.consul_bootstrap_token == "consul-" + SECRET


def test_the_forms_are_never_confused(tmp_path):
    ident = identity_file(tmp_path / "id.txt")
    bg.save(tmp_path / ".aini" / bg.FILE_NAME, MATERIAL, PASSPHRASE, n=2**14)
    age = bootstrap.key_for(config(public(ident)), environ={ENV: str(ident)})
    for call in (lambda: bootstrap.load_material(tmp_path, age),
                 lambda: bootstrap.save_material(tmp_path, MATERIAL, age)):
        with pytest.raises(InputError, match=r"asks for the break-glass file encrypted with age \(services.vault."
                           r"age_recipients is set\), but .*breakglass.enc is encrypted with a passphrase; "
                           "re-encrypt it with: aini vault rekey-breakglass"):
            call()
    assert not (tmp_path / ".aini" / "breakglass.age").exists()
    server = vault_api.serve(tmp_path / "vault")
    try:  # refused before anything irreversible
        with pytest.raises(InputError, match="rekey-breakglass"):
            bootstrap.ensure_vault(VaultClient(server.url), tmp_path, ["n8n"], age)
        assert VaultClient(server.url).health().state == "uninitialized"
    finally:
        server.stop()

    bg.rekey(tmp_path, bootstrap.key_for(config(public(ident)), environ={bg.ENV_PASSPHRASE: PASSPHRASE}))
    passphrase = bootstrap.key_for(config(), environ={bg.ENV_PASSPHRASE: PASSPHRASE})
    with pytest.raises(InputError, match=r"a passphrase \(services.vault.age_recipients is empty\), but .*"
                       "breakglass.age is encrypted with age; re-encrypt it with: aini vault rekey-breakglass"):
        bootstrap.load_material(tmp_path, passphrase)
    assert not (tmp_path / ".aini" / "breakglass.enc").exists()


# ---------------------------------------------------------------------------------- rekey


def test_rekey_passphrase_to_age_and_back(tmp_path):
    ident = identity_file(tmp_path / "id.txt")
    bg.save(tmp_path / ".aini" / bg.FILE_NAME, MATERIAL, PASSPHRASE, n=2**14)
    env = {bg.ENV_PASSPHRASE: PASSPHRASE}
    # Without the identity the new file is checked as far as it can be: age, one stanza per recipient.
    done = bg.rekey(tmp_path, bootstrap.key_for(config(public(ident)), environ=env))
    aini_dir = tmp_path / ".aini"
    assert (done.old.name, done.new.name, done.decrypted) == ("breakglass.enc", "breakglass.age", False)
    assert sorted(p.name for p in aini_dir.iterdir()) == ["breakglass.age"]
    assert stat.S_IMODE(done.new.stat().st_mode) == 0o600
    assert bg.AgeKey((), environ={ENV: str(ident)}).open(done.new.read_bytes(), "f") == MATERIAL

    env = {ENV: str(ident), bg.ENV_PASSPHRASE: PASSPHRASE + " two"}
    back = bg.rekey(tmp_path, bootstrap.key_for(config(), environ=env))
    assert (back.new.name, back.decrypted) == ("breakglass.enc", True)
    assert sorted(p.name for p in aini_dir.iterdir()) == ["breakglass.enc"]
    assert bg.load(back.new, PASSPHRASE + " two") == MATERIAL

    with pytest.raises(InputError, match="already encrypted with a passphrase, as aini.yml asks; to use age instead, "
                       "set services.vault.age_recipients"):
        bg.rekey(tmp_path, bootstrap.key_for(config(), environ=env))


def test_rekey_to_new_recipients(tmp_path):
    old, new = identity_file(tmp_path / "old.txt"), identity_file(tmp_path / "new.txt")
    bootstrap.save_material(tmp_path, MATERIAL, bg.AgeKey((public(old),), environ={}))
    env = {ENV: str(old)}  # opens the present file; not one of the new recipients
    done = bg.rekey(tmp_path, bootstrap.key_for(config(public(new)), environ=env))
    assert done.old == done.new and not done.decrypted
    with pytest.raises(bg.BreakGlassError, match="no identity in"):
        bg.AgeKey((), environ=env).open(done.new.read_bytes(), "f")
    env = {ENV: str(new)}  # one of the new recipients: decrypted back before it replaces the file
    done = bg.rekey(tmp_path, bootstrap.key_for(config(public(new), public(old)), environ=env))
    assert done.decrypted
    for ident in (old, new):
        assert bg.AgeKey((), environ={ENV: str(ident)}).open(done.new.read_bytes(), "f") == MATERIAL


def test_rekey_refuses_when_unsure(tmp_path):
    ident = identity_file(tmp_path / "id.txt")
    key = bootstrap.key_for(config(public(ident)), environ={ENV: str(ident)})
    with pytest.raises(bg.BreakGlassError, match="no break-glass file"):
        bg.rekey(tmp_path, key)
    bootstrap.save_material(tmp_path, MATERIAL, key)
    bg.save(tmp_path / ".aini" / bg.FILE_NAME, MATERIAL, PASSPHRASE, n=2**14)
    with pytest.raises(InputError, match="both .* exist"):
        bg.rekey(tmp_path, key)
    (tmp_path / ".aini" / bg.FILE_NAME).unlink()
    wrong = identity_file(tmp_path / "wrong.txt")
    before = (tmp_path / ".aini" / "breakglass.age").read_bytes()
    with pytest.raises(bg.BreakGlassError, match="no identity in"):
        bg.rekey(tmp_path, bootstrap.key_for(config(public(ident)), environ={ENV: str(wrong)}))
    assert (tmp_path / ".aini" / "breakglass.age").read_bytes() == before


# ----------------------------------------------------------------------- the age CLI


@pytest.fixture
def age_cli() -> tuple[str, str]:
    found = shutil.which("age"), shutil.which("age-keygen")
    if None in found:
        pytest.fail("the age CLI is missing; install it: apt-get install -y age")
    return found  # type: ignore[return-value]


def test_the_age_cli_opens_what_aini_writes(tmp_path, age_cli):
    age, keygen = age_cli
    ident = tmp_path / "identity.txt"
    subprocess.run([keygen, "-o", str(ident)], check=True, capture_output=True)
    bootstrap.save_material(tmp_path, MATERIAL, bootstrap.key_for(config(public(ident)), environ={}))
    result = subprocess.run([age, "-d", "-i", str(ident), str(tmp_path / ".aini" / "breakglass.age")],
                            capture_output=True, check=True)
    content = json.loads(result.stdout)
    assert content["vault"]["unseal_keys"] == list(MATERIAL.vault_unseal_keys)
    assert content["consul"]["bootstrap_token"] == MATERIAL.consul_bootstrap_token


@pytest.mark.parametrize("armor", [True, False])
def test_aini_opens_what_the_age_cli_writes(tmp_path, age_cli, armor):
    age, keygen = age_cli
    ident = tmp_path / "identity.txt"
    subprocess.run([keygen, "-o", str(ident)], check=True, capture_output=True)
    plaintext = json.dumps({"vault": {"unseal_keys": list(MATERIAL.vault_unseal_keys),
                                      "root_token": MATERIAL.vault_root_token},
                            "consul": {"bootstrap_token": MATERIAL.consul_bootstrap_token}})
    sealed = subprocess.run([age, "-e", "-r", public(ident), *(["-a"] if armor else [])],
                            input=plaintext.encode(), capture_output=True, check=True).stdout  # plaintext over stdin
    path = tmp_path / ".aini" / "breakglass.age"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(sealed)
    path.chmod(0o600)
    key = bootstrap.key_for(config(public(ident)), environ={ENV: str(ident)})
    assert bootstrap.load_material(tmp_path, key) == MATERIAL


# --------------------------------------------------------------------------------- the CLI


def aini(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # stdin is a pipe, never a terminal: nothing may be asked
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AINI_BREAKGLASS")}
    return subprocess.run([sys.executable, "-m", "aini", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, input="", env={**environ, **(env or {})}, check=False)


def _project(tmp_path: Path, recipients: list[str]) -> Path:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    data = {"domain": "example.com", "email": "a@example.com", "target": {"kind": "local"},
            "tls": {"challenge": "local"}, "services": {"vault": {"age_recipients": recipients}}}
    (project / "aini.yml").write_text(yaml.safe_dump(data))
    return project


def test_cli_rekey_converts_and_exits_2_on_bad_input(tmp_path):
    ident = identity_file(tmp_path / "id.txt")
    project = _project(tmp_path, [public(ident)])
    bg.save(project / ".aini" / bg.FILE_NAME, MATERIAL, PASSPHRASE, n=2**14)

    result = aini("vault", "rekey-breakglass", cwd=project)  # no passphrase, no terminal
    assert result.returncode == 2 and bg.ENV_PASSPHRASE in result.stderr and "Traceback" not in result.stderr
    assert (project / ".aini" / bg.FILE_NAME).exists()

    result = aini("vault", "rekey-breakglass", cwd=project, env={bg.ENV_PASSPHRASE: PASSPHRASE + "!"})
    assert result.returncode == 1 and "wrong passphrase" in result.stderr and "Traceback" not in result.stderr

    result = aini("vault", "rekey-breakglass", cwd=project, env={bg.ENV_PASSPHRASE: PASSPHRASE, ENV: str(ident)})
    assert result.returncode == 0, result.stderr
    assert "breakglass.enc as" in result.stdout and no_secret_in(result.stdout + result.stderr)
    assert sorted(p.name for p in (project / ".aini").iterdir()) == ["breakglass.age"]

    ident.chmod(0o644)  # back to a passphrase: the identity must be private
    _project(tmp_path, [])
    result = aini("vault", "rekey-breakglass", cwd=project, env={bg.ENV_PASSPHRASE: PASSPHRASE, ENV: str(ident)})
    assert result.returncode == 2 and "chmod 600" in result.stderr and "Traceback" not in result.stderr
    ident.chmod(0o600)
    result = aini("vault", "rekey-breakglass", cwd=project, env={bg.ENV_PASSPHRASE: PASSPHRASE, ENV: str(ident)})
    assert result.returncode == 0, result.stderr
    assert bg.load(project / ".aini" / bg.FILE_NAME, PASSPHRASE) == MATERIAL
