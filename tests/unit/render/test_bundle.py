import json
import os
import stat
from pathlib import Path

import pytest

from aini.ops.render import render_bundle
from aini.project import Project
from aini.config import load_config
from aini.errors import InputError
from aini.render import bundle
from aini.store import SecretStore
from aini.docker import cmd as docker_cmd
from aini.docker import engine

from ..conftest import config_of, seed_store

GOLDEN = Path(__file__).parents[1] / "golden" / "default"


def rendered(config, tmp_path: Path) -> bundle.Bundle:
    return bundle.render(config, seed_store(tmp_path / ".aini"))


def test_default_bundle_matches_the_golden_files(tmp_path):
    files = rendered(config_of(), tmp_path)
    if os.environ.get("UPDATE_GOLDEN"):
        bundle.write(files, GOLDEN)
    on_disk = {str(p.relative_to(GOLDEN)): p.read_text() for p in sorted(GOLDEN.rglob("*")) if p.is_file()}
    assert on_disk == {path: f.content for path, f in files.items()}, "run UPDATE_GOLDEN=1 pytest tests/unit/render/test_bundle.py"


def test_rendering_is_deterministic(tmp_path):
    config = config_of(services={"n8n": {"database": "postgres"}})
    first = bundle.render(config, seed_store(tmp_path / "a"))
    second = bundle.render(config, SecretStore(tmp_path / "a"))
    assert {p: f.content for p, f in first.items()} == {p: f.content for p, f in second.items()}


def test_fresh_store_renders_twice_byte_identically(tmp_path):
    (tmp_path / "aini.yml").write_text("domain: example.com\nemail: a@example.com\n")
    config = load_config(tmp_path / "aini.yml")
    render_bundle(Project(config, tmp_path), tmp_path / "one")
    render_bundle(Project(config, tmp_path), tmp_path / "two")
    one = {p.relative_to(tmp_path / "one"): p.read_bytes() for p in (tmp_path / "one").rglob("*") if p.is_file()}
    two = {p.relative_to(tmp_path / "two"): p.read_bytes() for p in (tmp_path / "two").rglob("*") if p.is_file()}
    assert one == two and len(one) > 20


def test_secrets_only_in_private_env_files(tmp_path):
    store = seed_store(tmp_path / ".aini")
    files = bundle.render(config_of(), store)
    values = store.values()
    for path, file in files.items():
        leaked = [v for v in values if v in file.content]
        if file.private:
            continue
        assert not leaked, f"{path} holds a secret"
    env_files = [p for p, f in files.items() if p.endswith(".env")]
    assert env_files and all(files[p].private for p in env_files)


def test_written_modes(tmp_path):
    files = rendered(config_of(), tmp_path)
    bundle.write(files, tmp_path / "out")
    for path, file in files.items():
        mode = stat.S_IMODE((tmp_path / "out" / path).stat().st_mode)
        assert mode == (0o600 if file.private else 0o644), path


def test_manifest_hashes_every_file_and_orders_groups(tmp_path):
    files = rendered(config_of(), tmp_path)
    manifest = json.loads(files["manifest.json"].content)
    assert set(manifest["files"]) == set(files) - {"manifest.json"}
    assert manifest["order"][0] == "traefik" and manifest["order"].index("nextcloud") < manifest["order"].index("onlyoffice")
    changed = rendered(config_of(services={"n8n": {"timezone": "UTC"}}), tmp_path / "b")
    new = json.loads(changed["manifest.json"].content)["groups"]
    old = manifest["groups"]
    assert [g for g in old if old[g]["hash"] != new[g]["hash"]] == ["n8n"]


def test_only_the_web_facing_container_joins_the_proxy_network(tmp_path):
    import yaml

    files = rendered(config_of(), tmp_path)
    for path, file in files.items():
        if not path.endswith("compose.yml"):
            continue
        doc = yaml.safe_load(file.content)
        for name, svc in doc["services"].items():
            on_proxy = "proxy" in svc.get("networks", {})
            assert on_proxy == (name in {"traefik", "consul", "vault", "librechat", "n8n", "nextcloud", "nextcloud-cron", "onlyoffice"}), name
            assert ("ports" in svc) == (name == "traefik"), f"{name} publishes ports"
        if "internal" in doc.get("networks", {}):  # created by the deploy, as internal
            assert doc["networks"]["internal"] == {"name": f"aini-{path.split('/')[0]}", "external": True}
    declared = json.loads(files[bundle.MANIFEST].content)["networks"]
    assert declared and all(n["internal"] is True for n in declared.values())


def test_netdata_is_reached_by_traefik_alone_on_its_groups_network(tmp_path):
    """Netdata's API has no authentication: off the proxy network, only the containers on
    its group's internal network reach it: its socket proxy, Traefik and Consul (probes)."""
    import yaml

    files = rendered(config_of(), tmp_path)
    docs = {path.split("/")[0]: yaml.safe_load(f.content) for path, f in files.items() if path.endswith("compose.yml")}
    on_netdata = sorted(name for doc in docs.values() for name, svc in doc["services"].items()
                        if any(doc["networks"][n]["name"] == "aini-netdata" for n in svc.get("networks", {})))
    assert on_netdata == ["consul", "netdata", "socket-proxy", "traefik"]
    assert docs["traefik"]["networks"]["netdata-internal"] == {"name": "aini-netdata", "external": True}
    without = rendered(config_of(services__netdata={"enabled": False}), tmp_path / "off")
    assert "netdata-internal" not in yaml.safe_load(without["traefik/compose.yml"].content)["services"]["traefik"]["networks"]


def test_docker_socket_is_read_write_only_for_watchtower(tmp_path):
    import yaml

    files = rendered(config_of(), tmp_path)
    mounts = {}
    for path, file in files.items():
        if path.endswith("compose.yml"):
            for name, svc in yaml.safe_load(file.content)["services"].items():
                for volume in svc.get("volumes", []):
                    if volume.startswith("/var/run/docker.sock"):
                        mounts[name] = volume
    assert mounts == {"socket-proxy": "/var/run/docker.sock:/var/run/docker.sock:ro", "watchtower": "/var/run/docker.sock:/var/run/docker.sock"}


def test_image_mirror_and_overrides(tmp_path):
    config = config_of(images={"mirror": "registry.example.com/hub", "overrides": {"n8n": "registry.example.com/n8n:2.40.7-local"}})
    manifest = json.loads(rendered(config, tmp_path)["manifest.json"].content)
    images = {k: v for g in manifest["groups"].values() for k, v in g["images"].items()}
    assert images["traefik"] == "registry.example.com/hub/library/traefik:v3.7.15"
    assert images["librechat"] == "registry.example.com/hub/danny-avila/librechat:v0.8.8"
    assert images["n8n"] == "registry.example.com/n8n:2.40.7-local"


def test_a_missing_required_user_secret_names_the_variable(tmp_path):
    config = config_of(services={"nextcloud": {"s3": {"bucket": "my-files"}}})
    with pytest.raises(InputError, match="export AINI_SECRET_NEXTCLOUD_S3_KEY"):
        rendered(config, tmp_path)


def test_user_secrets_are_taken_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "aini.yml").write_text("domain: example.com\nemail: a@example.com\nservices: {nextcloud: {s3: {bucket: files-1}}}\n")
    monkeypatch.setenv("AINI_SECRET_NEXTCLOUD_S3_KEY", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AINI_SECRET_NEXTCLOUD_S3_SECRET", "s3-secret-value-123")
    result = render_bundle(Project(load_config(tmp_path / "aini.yml"), tmp_path), tmp_path / "b")
    assert result.imported == ["nextcloud_s3_key", "nextcloud_s3_secret"]
    env = (tmp_path / "b" / "nextcloud" / "nextcloud.env").read_text()
    assert "OBJECTSTORE_S3_SECRET='s3-secret-value-123'" in env
    assert "s3-secret-value-123" not in (tmp_path / "b" / "nextcloud" / "compose.yml").read_text()


def test_write_refuses_to_replace_a_directory_that_is_not_a_bundle(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.txt").write_text("years of work")
    with pytest.raises(InputError, match="not an AINI bundle"):
        bundle.write(rendered(config_of(), tmp_path), tmp_path / "precious")
    assert (tmp_path / "precious" / "thesis.txt").exists()


def test_rerender_removes_groups_that_were_disabled(tmp_path):
    bundle.write(rendered(config_of(), tmp_path), tmp_path / "out")
    bundle.write(rendered(config_of(services={"netdata": {"enabled": False}}), tmp_path / "x"), tmp_path / "out")
    assert not (tmp_path / "out" / "netdata").exists() and (tmp_path / "out" / "n8n" / "compose.yml").exists()


def test_store_refuses_a_world_readable_file(tmp_path):
    seed_store(tmp_path)
    (tmp_path / "secrets.json").chmod(0o644)
    with pytest.raises(InputError, match="chmod 600"):
        SecretStore(tmp_path)


def test_local_target_publishes_on_loopback_and_redirects_to_its_https_port(tmp_path):
    import yaml

    local = config_of(domain="localhost", target={"kind": "local", "http_port": 8080, "https_port": 8443})
    files = rendered(local, tmp_path)
    traefik = yaml.safe_load(files["traefik/compose.yml"].content)["services"]["traefik"]
    assert traefik["ports"] == ["127.0.0.1:8080:80", "127.0.0.1:8443:443"]
    static = yaml.safe_load(files["traefik/traefik.yml"].content)
    assert static["entryPoints"]["web"]["http"]["redirections"]["entryPoint"]["to"] == ":8443"
    assert "certificatesResolvers" not in static
    everywhere = yaml.safe_load(rendered(config_of(), tmp_path / "b")["traefik/compose.yml"].content)
    assert everywhere["services"]["traefik"]["ports"] == ["80:80", "443:443"]


def test_volumes_and_networks_carry_the_project_label(tmp_path):
    import yaml

    files = rendered(config_of(project="shop"), tmp_path)
    doc = yaml.safe_load(files["nextcloud/compose.yml"].content)
    assert all(v["labels"] == {"aini.project": "shop"} for v in doc["volumes"].values())
    internal = json.loads(files[bundle.MANIFEST].content)["networks"]["nextcloud"]
    argv = engine.network_create_cmd(docker_cmd.Tools(("docker",), ("compose",)), engine.NetworkSpec(
        internal["name"], None, internal["internal"]), "shop").argv
    assert argv == ("docker", "network", "create", "--label", "aini.project=shop", "--internal", "aini-nextcloud")


def test_local_tls_serves_the_local_ca_certificate(tmp_path):
    import yaml

    files = rendered(config_of(domain="localhost", target={"kind": "local"}), tmp_path)
    tls = yaml.safe_load(files["traefik/dynamic/middlewares.yml"].content)["tls"]
    pair = {"certFile": "/etc/traefik/certs/local.crt", "keyFile": "/etc/traefik/certs/local.key"}
    assert tls["certificates"] == [pair] and tls["stores"]["default"]["defaultCertificate"] == pair
    volumes = yaml.safe_load(files["traefik/compose.yml"].content)["services"]["traefik"]["volumes"]
    assert "./certs:/etc/traefik/certs:ro" in volumes
    acme = yaml.safe_load(rendered(config_of(), tmp_path / "b")["traefik/dynamic/middlewares.yml"].content)["tls"]
    assert "certificates" not in acme


def test_n8n_gets_its_owner_password_only_as_a_bcrypt_hash_n8n_accepts(tmp_path):
    """n8n 2.40.7 (instance-settings-loader/loaders/owner...js) refuses to start unless the hash
    matches /^\\$2[aby]\\$\\d{2}\\$[./A-Za-z0-9]{53}$/; the password itself is in no file."""
    import re

    import bcrypt

    store = SecretStore(tmp_path / ".aini")
    store.ensure(catalog_secrets())
    files = bundle.render(config_of(), store)
    password = store.get("n8n_owner_password")
    env = dict(line.split("=", 1) for line in files["n8n/n8n.env"].content.splitlines())
    digest = env["N8N_INSTANCE_OWNER_PASSWORD_HASH"].strip("'")
    assert re.fullmatch(r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}", digest)
    assert bcrypt.checkpw(password.encode(), digest.encode())
    assert all(password not in f.content for f in files.values())
    store.save()
    again = bundle.render(config_of(), SecretStore(tmp_path / ".aini"))
    assert again["n8n/n8n.env"].content == files["n8n/n8n.env"].content  # the salt is kept: no redeploy


def catalog_secrets():
    from aini import catalog

    return catalog.secrets_for(catalog.enabled(config_of()))
