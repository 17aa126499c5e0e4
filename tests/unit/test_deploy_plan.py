"""The deploy step's pure parts: plans and argv lists as data (no Docker needed).

(These belong in tests/unit; they live here until that directory's owner moves them.)
"""
from __future__ import annotations

import datetime as dt
import io
import json
import ssl
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from aini import catalog, deploy, localca
from aini.catalog.nextcloud import ENABLE_ONLYOFFICE
from aini.config import validate_data
from aini.render import bundle
from aini.secrets import SecretStore

TOOLS = deploy.Tools(("docker",), ("/opt/compose",))


def manifest(**groups) -> dict:
    return {
        "project": "p",
        "order": list(groups),
        "groups": {g: {"hash": h, "services": [g], "images": {g: f"img/{g}:1"}} for g, h in groups.items()},
        "files": {},
    }


def test_up_argv_is_a_list_without_secrets():
    cmd = deploy.compose_up_cmd(TOOLS, Path("/d"), "nextcloud", 120)
    assert cmd.argv == (
        "/opt/compose", "--ansi", "never", "--progress", "plain", "--project-name", "aini-nextcloud",
        "--project-directory", "/d/nextcloud", "-f", "/d/nextcloud/compose.yml",
        "up", "--detach", "--wait", "--wait-timeout", "120", "--pull", "never", "--remove-orphans",
    )
    assert cmd.timeout == 420
    again = deploy.compose_up_cmd(TOOLS, Path("/d"), "traefik", 60, recreate=["traefik"])
    assert again.argv[-3:] == ("--force-recreate", "--no-deps", "traefik")


def test_plan_first_deploy_brings_everything_up_in_order():
    p = deploy.plan(manifest(traefik="a", n8n="b"), None, {}, {})
    assert [(a.group, a.action, a.reason) for a in p.actions] == [("traefik", "up", "new"), ("n8n", "up", "new")]
    assert p.images == ("img/traefik:1", "img/n8n:1")


def test_plan_skips_unchanged_running_groups_and_redeploys_stopped_ones():
    m = manifest(traefik="a", n8n="b", vault="c")
    deployed = manifest(traefik="a", n8n="x", vault="c")
    running = {"traefik": {"traefik"}, "n8n": {"n8n"}}
    p = deploy.plan(m, deployed, running, {})
    assert [(a.group, a.action) for a in p.actions] == [("traefik", "skip"), ("n8n", "up"), ("vault", "up")]
    assert p.actions[2].reason == "not running: vault"
    assert p.images == ("img/n8n:1", "img/vault:1")


def test_plan_takes_down_groups_no_longer_in_the_bundle():
    p = deploy.plan(manifest(traefik="a"), manifest(traefik="a", onlyoffice="o"), {"traefik": {"traefik"}}, {})
    assert [(a.group, a.action) for a in p.actions] == [("traefik", "skip"), ("onlyoffice", "down")]
    assert p.images == ()


def test_plan_recreates_services_whose_mounted_file_changed():
    compose = {"services": {"consul": {"image": "c", "volumes": ["data:/d", "./consul.hcl:/c/consul.hcl:ro"]}}}
    m = manifest(consul="new")
    m["files"] = {"consul/consul.hcl": "2", "consul/compose.yml": "1"}
    old = manifest(consul="old")
    old["files"] = {"consul/consul.hcl": "1", "consul/compose.yml": "1"}
    p = deploy.plan(m, old, {"consul": {"consul"}}, {"consul": compose}, {"consul": compose})
    assert p.actions[0].recreate == ("consul",)
    changed = {"services": {"consul": {**compose["services"]["consul"], "image": "d"}}}
    p = deploy.plan(m, old, {"consul": {"consul"}}, {"consul": changed}, {"consul": compose})
    assert p.actions[0].recreate == ()  # compose recreates it anyway


def test_plan_networks_created_by_their_group_or_by_the_deploy_step():
    composes = {
        "traefik": {"networks": {"proxy": {"name": "aini-proxy"}}},
        "n8n": {"networks": {"proxy": {"name": "aini-proxy", "external": True},
                             "shared": {"name": "aini-shared", "external": True}}},
    }
    m = manifest(traefik="a", n8n="b")
    running = {"traefik": {"traefik"}, "n8n": {"n8n"}}
    p = deploy.plan(m, m, running, composes, existing_networks=["aini-shared"])
    assert [(a.group, a.action, a.reason) for a in p.actions][0] == ("traefik", "up", "network aini-proxy missing")
    p = deploy.plan(m, m, running, composes, existing_networks=["aini-proxy"])
    assert p.networks == (deploy.NetworkSpec("aini-shared"),)
    assert deploy.network_create_cmd(TOOLS, deploy.NetworkSpec("n", "10.1.0.0/24"), "p").argv == (
        "docker", "network", "create", "--label", "aini.project=p", "--subnet", "10.1.0.0/24", "n")


def test_scrub_removes_secret_values_and_parts_of_derived_ones():
    text = "JWT_SECRET=abcdefgh123 user admin:$2b$10$hashhashhash ok"
    out = deploy.scrub(text, ["abcdefgh123", "fp1234567890abcd admin:$2b$10$hashhashhash"])
    assert out == "JWT_SECRET=*** user admin:*** ok"


def test_missing_images_message_names_them_and_explains_the_settings():
    m = manifest(nextcloud="a")
    text = deploy.missing_images_message({"img/nextcloud:1": "not found"}, m)
    assert "nextcloud: img/nextcloud:1 (not found)" in text
    assert "mirror:" in text and "overrides:" in text and "nextcloud: registry.example.com/nextcloud:1" in text


def test_sync_writes_in_place_keeps_inodes_and_modes(tmp_path):
    f = bundle.BundleFile
    files = {"g/compose.yml": f("a"), "g/g.env": f("S=1\n", private=True), "g/dyn/r.yml": f("r")}
    assert sorted(deploy.sync_files(files, tmp_path)) == sorted(files)
    inode = (tmp_path / "g/g.env").stat().st_ino
    assert (tmp_path / "g/g.env").stat().st_mode & 0o777 == 0o600
    files["g/g.env"] = f("S=2\n", private=True)
    del files["g/dyn/r.yml"]
    (tmp_path / "g/dyn/kept.yml").write_text("k")
    changed = deploy.sync_files(files, tmp_path, keep=["g/dyn/kept.yml"])
    assert sorted(changed) == ["g/dyn/r.yml", "g/g.env"]
    assert (tmp_path / "g/g.env").stat().st_ino == inode  # a bind mount of it sees the change
    assert (tmp_path / "g/g.env").read_text() == "S=2\n"
    assert not (tmp_path / "g/dyn/r.yml").exists() and (tmp_path / "g/dyn/kept.yml").exists()
    assert deploy.sync_files(files, tmp_path, keep=["g/dyn/kept.yml"]) == []


def test_record_group_tracks_what_is_deployed(tmp_path):
    m = manifest(traefik="a", n8n="b")
    m["files"] = {"traefik/compose.yml": "1", "n8n/compose.yml": "2"}
    site, deployed = deploy.LocalSite(tmp_path), None
    for group, digest in (("traefik", "a"), ("n8n", "b"), ("n8n", None)):
        deployed = deploy.updated_deployed(deployed, m, group, digest)
        site.save_deployed(deploy.deployed_text(deployed))
    saved = deploy.load_deployed(tmp_path)
    assert list(saved["groups"]) == ["traefik"] and saved["files"] == {"traefik/compose.yml": "1"}
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------------- local CA


def test_local_ca_issues_a_certificate_for_every_route_and_reuses_it(tmp_path):
    config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"},
                            "services": {"onlyoffice": {"enabled": False}}}, "t")
    hosts = localca.hostnames(config)
    assert "chat.localhost" in hosts and "office.localhost" not in hosts
    certs = localca.ensure(tmp_path / "ca", "localhost", hosts)
    assert certs.ca_created and certs.issued and certs.names == tuple(hosts)
    assert certs.key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    again = localca.ensure(tmp_path / "ca", "localhost", hosts)
    assert not again.ca_created and not again.issued
    more = localca.ensure(tmp_path / "ca", "localhost", [*hosts, "office.localhost"])
    assert more.issued and not more.ca_created
    # openssl agrees: the chain verifies for the name, under the CA's name constraint.
    r = subprocess.run(["openssl", "verify", "-CAfile", str(certs.ca_cert), "-verify_hostname", "office.localhost",
                        str(certs.cert)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    ssl.create_default_context(cafile=str(certs.ca_cert))  # loads as a trust anchor
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=340)  # within 30 days of expiry: renewed
    assert localca.ensure(tmp_path / "ca", "localhost", [*hosts, "office.localhost"], now=later).issued


def test_local_ca_refuses_a_readable_key(tmp_path):
    certs = localca.ensure(tmp_path, "example.test", ["a.example.test"])
    assert "*.example.test" in certs.names
    (tmp_path / "ca.key").chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        localca.ensure(tmp_path, "example.test", ["a.example.test"])


def test_local_ca_is_made_anew_for_another_domain(tmp_path):
    first = localca.ensure(tmp_path, "one.test", ["a.one.test"])
    ca1 = first.ca_cert.read_bytes()
    second = localca.ensure(tmp_path, "two.test", ["a.two.test"])
    assert second.ca_created and second.ca_cert.read_bytes() != ca1


def test_render_then_sync_a_real_bundle(tmp_path):
    config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"}}, "t")
    store = SecretStore(tmp_path / ".aini")
    store.ensure(catalog.secrets_for(catalog.enabled(config)))
    files = bundle.render(config, store)
    m = json.loads(files[bundle.MANIFEST].content)
    p = deploy.plan(m, None, {}, deploy._composes(files))
    assert [a.group for a in p.actions] == m["order"]
    # the traefik group creates the proxy network; the deploy creates each internal one
    # before the first group, so Consul (second in order) can join them all
    assert {(n.name, n.internal) for n in p.networks} == {(f"aini-{g}", True) for g in ("librechat", "nextcloud", "netdata")}
    consul = deploy._composes(files)["consul"]
    assert set(consul["services"]["consul"]["networks"]) == {"proxy", "librechat-internal", "nextcloud-internal",
                                                             "netdata-internal"}
    assert consul["networks"]["nextcloud-internal"] == {"name": "aini-nextcloud", "external": True}
    assert set(deploy._composes(files)["librechat"]["services"]["mongodb"]["networks"]) == {"internal"}
    deploy.sync_files({k: v for k, v in files.items() if k != bundle.MANIFEST}, tmp_path / "d")
    assert (tmp_path / "d/n8n/n8n.env").stat().st_mode & 0o777 == 0o600


def test_deploy_runs_groups_in_order_and_never_puts_a_secret_in_argv(tmp_path):
    """The executor against a recording runner: what it would run, as data."""
    config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"}}, "t")
    store = SecretStore(tmp_path / ".aini")
    store.ensure(catalog.secrets_for(catalog.enabled(config)))
    files = bundle.render(config, store)
    manifest_ = json.loads(files[bundle.MANIFEST].content)
    order = manifest_["order"]
    calls: list[tuple[str, ...]] = []

    def run(cmd):
        calls.append(cmd.argv)
        return subprocess.CompletedProcess(cmd.argv, 0, "", "")

    out = io.StringIO()
    result = deploy.deploy(files, tmp_path / "deployed", store.values(), tools=TOOLS, run=run,
                           console=Console(file=out, width=200))
    assert [g.group for g in result.groups] == order
    ups = [c for c in calls if "up" in c]
    assert [c[c.index("--project-name") + 1] for c in ups] == [f"aini-{g}" for g in order]
    inspected = [c[5:] for c in calls if c[1:3] == ("image", "inspect")]
    wanted = {img for g in manifest_["groups"].values() for img in g["images"].values()}
    assert len(inspected) == 1 and sorted(inspected[0]) == sorted(wanted)  # one command, before any group
    everything = " ".join(" ".join(c) for c in calls) + out.getvalue()
    for value in store.values():
        assert value not in everything
    assert (tmp_path / "deployed" / "manifest.json").exists()
    # Run again with everything "running": nothing but two read-only queries.
    calls.clear()

    def run_all_up(cmd):
        calls.append(cmd.argv)
        if cmd.argv[1] == "ps":
            rows = [f"{s.group}\t{s.name}\trunning\t{s.container}" for s in catalog.enabled(config)]
            return subprocess.CompletedProcess(cmd.argv, 0, "\n".join(rows), "")
        if cmd.argv[1] == "network":  # were it missing, the traefik group would run to create it
            return subprocess.CompletedProcess(cmd.argv, 0, "bridge\naini-proxy\n", "")
        return subprocess.CompletedProcess(cmd.argv, 0, "", "")

    again = deploy.deploy(files, tmp_path / "deployed", store.values(), tools=TOOLS, run=run_all_up,
                          console=Console(file=io.StringIO()))
    assert again.touched == [] and [c[1] for c in calls] == ["network", "ps"]


def test_a_group_taken_down_takes_its_internal_network_along(tmp_path):
    store = SecretStore(tmp_path / ".aini")

    def bundle_of(**services):
        config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"},
                                "services": services}, "t")
        store.ensure(catalog.secrets_for(catalog.enabled(config)))
        return config, bundle.render(config, store)

    calls: list[tuple[str, ...]] = []

    def run(cmd):
        calls.append(cmd.argv)
        if cmd.argv[1] == "ps":
            rows = [f"{s.group}\t{s.name}\trunning\t{s.container}" for s in catalog.enabled(config)]
            return subprocess.CompletedProcess(cmd.argv, 0, "\n".join(rows), "")
        return subprocess.CompletedProcess(cmd.argv, 0, "", "")

    config, files = bundle_of()
    deploy.deploy(files, tmp_path / "deployed", (), tools=TOOLS, run=run, console=Console(file=io.StringIO()))
    created = [c[-1] for c in calls if c[1:3] == ("network", "create")]
    assert sorted(created) == ["aini-librechat", "aini-netdata", "aini-nextcloud"]  # before the first group
    assert calls.index(next(c for c in calls if c[1:3] == ("network", "create"))) < calls.index(
        next(c for c in calls if "up" in c))
    calls.clear()
    _, without = bundle_of(netdata={"enabled": False})
    result = deploy.deploy(without, tmp_path / "deployed", (), tools=TOOLS, run=run, console=Console(file=io.StringIO()))
    # Traefik loses a route, Consul a network; the rest stays as it is
    assert [(g.group, g.action) for g in result.groups if g.action != "skip"] == [
        ("traefik", "up"), ("consul", "up"), ("netdata", "down")]
    removed = [c for c in calls if c[1:3] == ("network", "rm")]
    assert removed == [("docker", "network", "rm", "aini-netdata")]
    assert calls.index(removed[0]) > calls.index(next(c for c in calls if "down" in c))  # after its containers


def test_post_deploy_steps_run_after_their_group_and_a_failure_names_them(tmp_path):
    config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"}}, "t")
    store = SecretStore(tmp_path / ".aini")
    store.ensure(catalog.secrets_for(catalog.enabled(config)))
    files = bundle.render(config, store)
    php = files["nextcloud/onlyoffice.config.php"].content
    assert "getenv('AINI_ONLYOFFICE_JWT_SECRET')" in php and not files["nextcloud/onlyoffice.config.php"].private
    assert not any(v in php for v in store.values())
    calls: list[tuple[str, ...]] = []

    def run(cmd, fail=False):
        calls.append(cmd.argv)
        bad = fail and "exec" in cmd.argv
        return subprocess.CompletedProcess(cmd.argv, 1 if bad else 0, "", "App not found: onlyoffice" if bad else "")

    deploy.deploy(files, tmp_path / "d", store.values(), tools=TOOLS, run=run, console=Console(file=io.StringIO()))
    execs = [c for c in calls if "exec" in c]
    assert execs == [("docker", "exec", "--user", "www-data", "--workdir", "/var/www/html", "aini-nextcloud", "sh",
                      "-c", ENABLE_ONLYOFFICE)]
    nextcloud_up = next(i for i, c in enumerate(calls) if "aini-nextcloud" in c and "up" in c)
    assert calls.index(execs[0]) == nextcloud_up + 1  # right after its group came up healthy

    calls.clear()
    with pytest.raises(deploy.DeployError, match="(?s)enable the OnlyOffice connector app.*App not found") as err:
        deploy.deploy(files, tmp_path / "e", store.values(), tools=TOOLS, run=lambda c: run(c, fail=True),
                      console=Console(file=io.StringIO()))
    assert err.value.group == "nextcloud"
    assert "nextcloud" not in deploy.load_deployed(tmp_path / "e")["groups"]  # retried on the next run


def test_without_onlyoffice_nextcloud_has_no_step_and_no_connector_config(tmp_path):
    config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"},
                            "services": {"onlyoffice": {"enabled": False}}}, "t")
    store = SecretStore(tmp_path / ".aini")
    store.ensure(catalog.secrets_for(catalog.enabled(config)))
    files = bundle.render(config, store)
    assert "nextcloud/onlyoffice.config.php" not in files
    assert "post_deploy" not in json.loads(files[bundle.MANIFEST].content)["groups"]["nextcloud"]


def test_plan_against_consul_names_new_changed_unchanged_and_removed_groups():
    from aini.plan import diff_groups

    assert diff_groups({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "x", "d": "4"}) == [
        ("a", "unchanged"), ("b", "changed"), ("c", "new"), ("d", "removed")]
    assert diff_groups({"a": "1"}, None) == [("a", "new")]


def test_the_source_address_command_really_prints_where_the_kernel_sends_from():
    cmd = deploy.source_address_cmd("127.0.0.1", 8200)
    assert cmd.argv[0] == "python3" and cmd.argv[-2:] == ("127.0.0.1", "8200")  # data, not a shell string
    r = deploy.run_cmd(cmd)
    assert (r.returncode, r.stdout.strip()) == (0, "127.0.0.1")
