import re

import pytest

from aini import catalog
from aini.catalog.model import Ref
from aini.config import IMAGE_RE

from ..conftest import config_of

ALL_ON = config_of(services={"n8n": {"database": "postgres"}, "nextcloud": {"s3": {"bucket": "my-files"}}}, tls={"challenge": "dns"})
OPENBAO = config_of(services={"vault": {"flavor": "openbao"}})


def test_every_entry_is_pinned_to_an_exact_version():
    for spec in catalog.CATALOG:
        match = IMAGE_RE.match(spec.pinned)
        assert match and match["tag"] == spec.version, spec.name
        assert not re.search(r"latest|stable|^\d+$|^v?\d+\.\d+$", spec.version), f"{spec.name}: {spec.version} is not exact"


def test_entries_have_sane_budgets_and_unique_names():
    assert len({s.name for s in catalog.CATALOG}) == len(catalog.CATALOG)
    for spec in catalog.CATALOG:
        assert 0 < spec.mem_reservation <= spec.mem_limit, spec.name


def test_watchtower_is_the_maintained_fork_and_restarts_only_the_applications():
    assert catalog.by_name("watchtower").image.endswith("nickfedor/watchtower")
    for spec in catalog.CATALOG:
        if spec.role in ("database", "search", "cache"):
            assert spec.update == "monitor", spec.name
    updated = {s.name for s in catalog.CATALOG if s.update == "update"}
    assert updated == {"librechat", "n8n", "nextcloud", "nextcloud-cron", "onlyoffice"}
    assert catalog.by_name("watchtower").env(catalog.context(config_of()))["WATCHTOWER_CLEANUP"] == "false"


@pytest.mark.parametrize("config", [config_of(), ALL_ON, OPENBAO])
def test_every_secret_reference_is_declared_by_an_enabled_entry(config):
    specs = catalog.enabled(config)
    ctx = catalog.context(config)
    declared = {s.name for s in catalog.secrets_for(specs)} | {s.name for s in catalog.user_secrets_for(specs)}
    for spec in specs:
        for key, value in spec.env(ctx).items():
            if isinstance(value, Ref):
                assert value.secret in declared, f"{spec.name}.{key} -> {value.secret}"
        for dep in spec.depends_on:
            catalog.by_name(dep)  # a dependency names a catalog entry


def test_shared_secrets_are_one_secret():
    specs = catalog.enabled(config_of())
    names = [s.name for s in catalog.secrets_for(specs)]
    assert names.count("onlyoffice_jwt_secret") == 1 and names.count("meili_master_key") == 1
    jwt_users = [s.name for s in specs if any(x.name == "onlyoffice_jwt_secret" for x in s.secrets)]
    assert jwt_users == ["nextcloud", "onlyoffice"]


def test_options_switch_entries():
    names = lambda cfg: {s.name for s in catalog.enabled(cfg)}  # noqa: E731
    assert "n8n-postgres" not in names(config_of()) and "n8n-postgres" in names(ALL_ON)
    assert "meilisearch" not in names(config_of(services={"librechat": {"search": False}}))
    assert {"openbao"} <= names(OPENBAO) and "vault" not in names(OPENBAO)
    assert names(config_of(services={"nextcloud": {"enabled": False}, "onlyoffice": {"enabled": False}})).isdisjoint(
        {"nextcloud", "mariadb", "redis", "nextcloud-cron", "onlyoffice"}
    )


def test_never_rotate_keys_are_marked():
    frozen = {s.name for spec in catalog.CATALOG for s in spec.secrets if not s.rotatable}
    # Consul's gossip key: its serf keyring keeps the first value; `consul keyring` rotates it.
    assert frozen == {"librechat_creds_key", "librechat_creds_iv", "n8n_encryption_key", "consul_gossip_key"}


def test_secret_lengths_match_upstream_formats():
    secrets = {s.name: s for spec in catalog.CATALOG for s in spec.secrets}
    assert (secrets["librechat_creds_key"].length, secrets["librechat_creds_key"].alphabet) == (64, "hex")
    assert (secrets["librechat_creds_iv"].length, secrets["librechat_creds_iv"].alphabet) == (32, "hex")
    import base64

    from aini.store import generate

    key = generate(secrets["consul_gossip_key"])  # `consul keygen`'s form: 32 bytes, standard base64
    assert len(key) == secrets["consul_gossip_key"].length and len(base64.b64decode(key, validate=True)) == 32


def test_aini_up_names_every_login_it_made_and_how_to_see_its_password_never_the_password():
    rows = {title: (url, user, command) for title, url, user, command in catalog.logins(config_of())}
    assert rows["n8n"] == ("https://n8n.example.com/", "admin@example.com",
                           "aini secrets get n8n n8n_owner_password --show")
    assert rows["Nextcloud"][1:] == ("admin", "aini secrets get nextcloud nextcloud_admin_password --show")
    assert rows["LibreChat"] == ("https://chat.example.com/", "admin@example.com",
                                 "aini secrets get librechat librechat_admin_password --show")
    assert {title for title, (_, user, _) in rows.items() if user == "admin"} >= {"Traefik", "Consul", "Vault", "Netdata"}
    no_vault = config_of(services={"vault": {"enabled": False}, "n8n": {"enabled": False}})
    assert {command for _, _, _, command in catalog.logins(no_vault)} == {
        "admin_password in .aini/secrets.json", "nextcloud_admin_password in .aini/secrets.json",
        "librechat_admin_password in .aini/secrets.json"}
