"""tls.acme_ca: the CA of a private ACME server's HTTPS endpoint, checked when aini.yml is
loaded and rendered into Traefik's bundle as a mounted file plus LEGO_CA_CERTIFICATES."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aini.config import load_config, validate_data
from aini.errors import ConfigError
from aini.render import bundle
from tests.harness.acme import make_listener_tls

from ..conftest import BASE, seed_store
from .test_traefik import Traefik
from ..tools import compose_binary, free_port

ACME = "https://ca.internal:9000/acme/acme/directory"


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory) -> Path:
    ca, _, _ = make_listener_tls(tmp_path_factory.mktemp("ca"))
    return ca


def config_with(ca: str | Path | None, base_dir: Path | None = None, **tls):
    data = {**BASE, "tls": {"acme_server": ACME, **tls}}
    if ca is not None:
        data["tls"]["acme_ca"] = str(ca)
    return validate_data(data, "aini.yml", base_dir)


def problems(ca: str | Path, base_dir: Path | None = None, **tls) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_with(ca, base_dir, **tls)
    return info.value.problems


# --- aini.yml -------------------------------------------------------------------------


def test_a_relative_path_starts_at_aini_yml_and_the_certificates_are_read_at_load(ca_pem, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "pki").mkdir(parents=True)
    (project / "pki" / "ca.pem").write_text("a comment openssl leaves\n" + ca_pem.read_text())
    (project / "aini.yml").write_text(yaml.safe_dump({**BASE, "tls": {"acme_server": ACME, "acme_ca": "pki/ca.pem"}}))
    monkeypatch.chdir(tmp_path)  # not the project directory
    config = load_config(project / "aini.yml")
    assert config.tls.acme_ca == str(project / "pki" / "ca.pem")
    assert config.tls.acme_ca_pem == ca_pem.read_text()  # certificate blocks only


def test_home_is_expanded(ca_pem, monkeypatch):
    monkeypatch.setenv("HOME", str(ca_pem.parent))
    assert config_with("~/ca.pem").tls.acme_ca == str(ca_pem)


def test_every_certificate_of_a_bundle_is_kept(ca_pem):
    two = ca_pem.read_text() * 2
    path = ca_pem.with_name("two.pem")
    path.write_text(two.replace("\n", "\r\n"))
    assert config_with(path).tls.acme_ca_pem == two


def test_acme_ca_needs_acme_server(ca_pem):
    data = {**BASE, "tls": {"acme_ca": str(ca_pem)}}
    with pytest.raises(ConfigError) as info:
        validate_data(data, "aini.yml")
    assert info.value.problems == [
        "tls.acme_ca: only applies to a private ACME server: set tls.acme_server or remove tls.acme_ca"
    ]


def test_an_invalid_acme_server_is_reported_once(ca_pem):
    found = problems(ca_pem, acme_server="http://plain.example.com/dir")
    assert len(found) == 1 and found[0].startswith("tls.acme_server:")


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "is not a file"),
        ("", "holds no '-----BEGIN CERTIFICATE-----' block"),
        ("-----BEGIN CERTIFICATE-----\nnot closed\n", "holds no '-----BEGIN CERTIFICATE-----' block"),
        ("\xff\xfe binary", "is not PEM text"),
        ("x" * (1024 * 1024), "is 1 MiB or larger"),
    ],
    ids=["missing", "empty", "unterminated", "binary", "huge"],
)
def test_a_bad_file_is_named_with_what_to_do(tmp_path, content, expected):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    (found,) = problems("ca.pem", tmp_path)
    assert found.startswith(f"tls.acme_ca: {path} {expected}")
    assert found.endswith("point it at the PEM file with the CA certificate of your ACME server's HTTPS endpoint")


def test_a_directory_is_not_a_file(tmp_path):
    hint = "point it at the PEM file with the CA certificate of your ACME server's HTTPS endpoint"
    assert problems(".", tmp_path) == [f"tls.acme_ca: {tmp_path} is not a file; {hint}"]


def test_a_private_key_is_refused_because_the_bundle_file_is_public(ca_pem, tmp_path):
    key = (ca_pem.parent / "listener.key").read_text()
    (tmp_path / "both.pem").write_text(ca_pem.read_text() + key)
    assert problems("both.pem", tmp_path) == [
        f"tls.acme_ca: {tmp_path / 'both.pem'} holds a private key; give only the CA certificate(s)"
    ]


def test_validate_exits_2_naming_the_field(tmp_path):
    (tmp_path / "aini.yml").write_text(yaml.safe_dump({**BASE, "tls": {"acme_server": ACME, "acme_ca": "nope.pem"}}))
    result = subprocess.run([sys.executable, "-m", "aini", "validate"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert f"  - tls.acme_ca: {tmp_path / 'nope.pem'} is not a file;" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_schema_describes_it():
    from aini.config import json_schema

    tls = json_schema()["$defs"]["Tls"]["properties"]
    assert "PEM file" in tls["acme_ca"]["description"]


# --- the bundle -----------------------------------------------------------------------


def render(config, tmp_path: Path) -> bundle.Bundle:
    store = seed_store(tmp_path / ".aini")
    if config.tls_challenge == "dns":
        store.set_user("hetzner_dns_token", "dns-token-value")
    return bundle.render(config, store)


@pytest.mark.parametrize("challenge", ["http", "dns"])
def test_traefik_gets_the_ca_file_mount_and_env(ca_pem, tmp_path, challenge):
    files = render(config_with(ca_pem, challenge=challenge), tmp_path)
    assert files["traefik/acme-ca.pem"].content == ca_pem.read_text()
    assert not files["traefik/acme-ca.pem"].private
    service = yaml.safe_load(files["traefik/compose.yml"].content)["services"]["traefik"]
    assert "./acme-ca.pem:/etc/traefik/acme-ca.pem:ro" in service["volumes"]
    assert service["environment"]["LEGO_CA_CERTIFICATES"] == "/etc/traefik/acme-ca.pem"
    static = yaml.safe_load(files["traefik/traefik.yml"].content)
    assert static["certificatesResolvers"]["le"]["acme"]["caServer"] == ACME
    if challenge == "dns":  # the DNS token still goes to the private env file, not to compose
        assert "HETZNER_API_TOKEN" in files["traefik/traefik.env"].content
        assert "HETZNER_API_TOKEN" not in service["environment"]
    manifest = yaml.safe_load(files["manifest.json"].content)
    assert "traefik/acme-ca.pem" in manifest["files"]


def test_without_acme_ca_nothing_changes(tmp_path):
    files = render(config_with(None), tmp_path)
    assert "traefik/acme-ca.pem" not in files
    service = yaml.safe_load(files["traefik/compose.yml"].content)["services"]["traefik"]
    assert "LEGO_CA_CERTIFICATES" not in service.get("environment", {})
    assert not any("acme-ca" in v for v in service["volumes"])


def test_the_compose_project_stays_valid(ca_pem, tmp_path):
    bundle.write(render(config_with(ca_pem), tmp_path), tmp_path / "bundle")
    result = subprocess.run([compose_binary(), "config", "--quiet"], cwd=tmp_path / "bundle" / "traefik",
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_traefik_starts_with_the_ca_in_its_environment(ca_pem, tmp_path, monkeypatch):
    store = seed_store(tmp_path / ".aini")
    config = config_with(ca_pem, acme_server=f"https://127.0.0.1:{free_port()}/dir")  # closed: nothing leaves
    bundle.write(bundle.render(config, store), tmp_path / "bundle")
    monkeypatch.setenv("LEGO_CA_CERTIFICATES", str(tmp_path / "bundle" / "traefik" / "acme-ca.pem"))
    server = Traefik(tmp_path / "bundle", store)
    try:
        server.wait()
        overview = server.api("/api/overview")["http"]["routers"]
        assert overview["errors"] == 0 and overview["warnings"] == 0
    finally:
        server.stop()
