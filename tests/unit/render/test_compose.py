"""Every rendered compose project is valid for the real Docker Compose v2 (no daemon needed)."""

import subprocess

import pytest

from aini.render import bundle

from ..conftest import config_of, seed_store
from ..tools import compose_binary

VARIANTS = {
    "default": config_of(),
    "everything": config_of(
        services={"n8n": {"database": "postgres"}, "vault": {"flavor": "openbao"}}, tls={"challenge": "dns", "staging": True}
    ),
    "minimal": config_of(
        services={n: {"enabled": False} for n in ("consul", "vault", "librechat", "n8n", "nextcloud", "onlyoffice", "netdata", "watchtower")}
    ),
    "local": config_of(domain="localhost", target={"kind": "local"}),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_compose_config_accepts_every_group(variant, tmp_path):
    store = seed_store(tmp_path / ".aini")
    if variant == "everything":
        store.set_user("hetzner_dns_token", "dns-token-value")
    files = bundle.render(VARIANTS[variant], store)
    bundle.write(files, tmp_path / "bundle")
    groups = sorted({p.split("/")[0] for p in files if "/" in p})
    assert groups
    compose = compose_binary()
    for group in groups:
        result = subprocess.run(
            [compose, "--project-directory", str(tmp_path / "bundle" / group), "-f", "compose.yml", "config", "--quiet"],
            cwd=tmp_path / "bundle" / group,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{variant}/{group}: {result.stderr}"


def test_compose_rejects_a_broken_project(tmp_path):
    """The check above can fail: a compose file with an unknown key is refused."""
    (tmp_path / "compose.yml").write_text("services:\n  x:\n    image: a:1\n    no_such_key: 1\n")
    result = subprocess.run([compose_binary(), "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0


def test_values_from_aini_yml_reach_the_container_literally_even_with_the_variable_set(tmp_path):
    """Compose interpolates ${X} from where it runs: a value from aini.yml is data, so the
    variable set in the caller's environment never reaches the container."""
    import json
    import os

    schedule, region = "0 0 4 * * ${AINI_TEST_MARKER}", "$AINI_TEST_MARKER-$(id)-`id`-$$"
    config = config_of(services={"watchtower": {"schedule": schedule},
                                 "nextcloud": {"s3": {"bucket": "aini-files", "region": region}}})
    store = seed_store(tmp_path / ".aini")
    store.set_user("nextcloud_s3_key", "key")
    store.set_user("nextcloud_s3_secret", "secret")
    bundle.write(bundle.render(config, store), tmp_path / "bundle")
    for group, variable, wanted in (("watchtower", "WATCHTOWER_SCHEDULE", schedule),
                                    ("nextcloud", "OBJECTSTORE_S3_REGION", region)):
        r = subprocess.run([compose_binary(), "-f", "compose.yml", "config", "--format", "json"],
                           cwd=tmp_path / "bundle" / group, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "AINI_TEST_MARKER": "leaked"})
        assert r.returncode == 0, r.stderr
        # `config` prints a compose file again, with `$$` for a literal `$`: the container gets one.
        assert "leaked" not in r.stdout
        assert json.loads(r.stdout)["services"][group]["environment"][variable].replace("$$", "$") == wanted


def test_compose_runs_with_what_docker_reads_and_nothing_else_of_the_callers(monkeypatch):
    from aini.sites import local

    for name, value in {"AINI_BREAKGLASS_PASSPHRASE": "p", "HCLOUD_TOKEN": "t", "AINI_SECRET_X": "s",
                        "COMPOSE_FILE": "other.yml", "DOCKER_HOST": "unix:///run/d.sock", "PATH": "/usr/bin"}.items():
        monkeypatch.setenv(name, value)
    env = local.subprocess_env()
    assert env["DOCKER_HOST"] == "unix:///run/d.sock" and env["PATH"] == "/usr/bin"
    assert not {"AINI_BREAKGLASS_PASSPHRASE", "HCLOUD_TOKEN", "AINI_SECRET_X", "COMPOSE_FILE"} & set(env)
