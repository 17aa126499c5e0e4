import pytest

from aini.config import AiniConfig, json_schema, parse_yaml, validate_data
from aini.catalog.checks import validate
from aini.errors import ConfigError

from .conftest import BASE, config_of


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(data, "aini.yml")
    return info.value.problems


def test_defaults_give_the_full_seed_stack_on_the_seed_subdomains():
    config = config_of()
    assert config.target.kind == "hetzner" and config.target.server_type == "cx33"
    assert config.tls_challenge == "http" and not config.tls.staging
    s = config.services
    assert all(getattr(s, n).enabled for n in ("consul", "vault", "librechat", "n8n", "nextcloud", "onlyoffice", "netdata", "watchtower"))
    assert s.n8n.database == "sqlite" and s.librechat.search and not s.librechat.registration


def test_unknown_key_names_the_field_and_suggests_the_nearest():
    assert problems({**BASE, "services": {"librechat": {"serch": False}}}) == [
        "services.librechat.serch: unknown key; did you mean 'search'?"
    ]
    assert problems({**BASE, "domian": "x.com"})[0].startswith("domian: unknown key; did you mean 'domain'?")


def test_unknown_key_inside_a_target_variant_is_named_without_the_tag():
    found = problems({**BASE, "target": {"kind": "ssh", "host": "h.example.com", "usr": "x"}})
    assert found == ["target.usr: unknown key; did you mean 'user'?"]


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"email": "a@example.com"}, "domain: Field required"),
        ({**BASE, "domain": "Example..com"}, "domain: must be a lowercase domain name"),
        ({**BASE, "domain": "192.168.1.1"}, "domain: must be a lowercase domain name"),
        ({**BASE, "email": "nobody"}, "email: must be an email address"),
        ({**BASE, "target": {"kind": "aws"}}, "target.kind: must be one of"),
        ({**BASE, "target": {"host": "x"}}, "target.kind: missing"),
        ({**BASE, "services": {"n8n": {"database": "mariadb"}}}, "services.n8n.database: Input should be 'sqlite' or 'postgres'"),
        ({**BASE, "services": {"n8n": {"timezone": "Mars/Olympus"}}}, "services.n8n.timezone: must be an IANA time zone"),
        ({**BASE, "services": {"librechat": {"subdomain": "Chat_1"}}}, "services.librechat.subdomain: must be one DNS label"),
        ({**BASE, "images": {"overrides": {"n8n": "n8nio/n8n:latest"}}}, "never 'latest'"),
        ({**BASE, "images": {"overrides": {"n8n": "n8nio/n8n"}}}, "pin an exact version"),
        ({**BASE, "images": {"overrides": {"n8n": "localhost:5000/n8n"}}}, "pin an exact version"),
        ({**BASE, "tls": {"challenge": "local"}}, "only works with target.kind 'local'"),
        ({**BASE, "services": {"nextcloud": {"enabled": False}}}, "services.onlyoffice needs services.nextcloud"),
        ({**BASE, "backup": {"schedule": "daily"}}, "backup.schedule: must be a 5-field cron"),
        ({**BASE, "services": {"watchtower": {"schedule": "0 4 * * *"}}}, "must be a 6-field cron"),
        ({**BASE, "target": {"kind": "hetzner", "ssh_from": ["10.0.0.0/33"]}}, "target.ssh_from: '10.0.0.0/33' is not a CIDR"),
        ({**BASE, "target": {"kind": "hetzner", "dns_zone": "example.org"}}, "does not contain the domain 'example.com'"),
        ({**BASE, "target": {"kind": "hetzner", "volume_gb": 5}}, "target.volume_gb: Input should be greater than or equal to 10"),
    ],
)
def test_invalid_values_are_named(data, expected):
    assert any(expected in p for p in problems(data)), problems(data)


@pytest.mark.parametrize("ref", ["aini-e2e/watchtower-double:150107070238", "redis:7", "localhost:5000/n8n:2.40.7",
                                 "registry.example.com:5000/hub/n8nio/n8n:2.40.7", "n8n@sha256:" + "a" * 64])
def test_pinned_references_are_accepted(ref):
    """A tag of digits only is a tag (found when a content-hash tag happened to be all digits),
    and a registry port is a port only before the first '/'."""
    assert config_of(images={"overrides": {"n8n": ref}}).images.overrides["n8n"] == ref


def test_duplicate_subdomains_are_refused():
    found = problems({**BASE, "services": {"n8n": {"subdomain": "chat"}}})
    assert found == ["services.n8n.subdomain: 'chat' is already used by librechat; choose another"]


def test_disabled_service_may_reuse_a_subdomain():
    config_of(services={"librechat": {"enabled": False}, "n8n": {"subdomain": "chat"}})


def test_local_target_defaults_to_a_local_ca_and_allows_localhost():
    config = validate_data({"domain": "localhost", "email": "me@example.com", "target": {"kind": "local"}}, "t")
    assert config.tls_challenge == "local"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: &x 1\nb: *x\n", "anchors and aliases are not supported"),
        ("domain: a.com\ndomain: b.com\n", "duplicate key 'domain'"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("", "the file is empty"),
        ("a: [1, 2\n", "not valid YAML"),
        ("!!python/object:os.system {}\n", "not valid YAML"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_yaml_loading_refuses_hostile_documents(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "aini.yml")
    assert expected in info.value.problems[0]


def test_json_schema_describes_every_top_level_key():
    schema = json_schema()
    assert set(schema["properties"]) == set(AiniConfig.model_fields)
    assert schema["required"] == ["domain", "email"]
    assert schema["additionalProperties"] is False
