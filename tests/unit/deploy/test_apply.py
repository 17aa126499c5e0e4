"""The executor with a fake engine: groups in order, no secret in an argv, networks, post-deploy steps."""

from __future__ import annotations

import datetime as dt
import io
import json
import ssl
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from aini import catalog
from aini.catalog.librechat import CREATE_ADMIN
from aini.catalog.nextcloud import ENABLE_ONLYOFFICE
from aini.config import validate_data
from aini.deploy import apply, diagnose, record, rollback
from aini.deploy import plan as deploy_plan
from aini.docker import cmd as docker_cmd
from aini.docker import compose as compose_cmds
from aini.docker import engine
from aini.errors import AiniError, InputError
from aini.infra import localca
from aini.ops import plan as ops_plan
from aini.render import bundle
from aini.sites import local as sites_local
from aini.store import SecretStore

from tests.unit.deploy.common import TOOLS, deployed_at, local_bundle, manifest, typed


def test_render_then_sync_a_real_bundle(tmp_path):
    config, store, files = local_bundle(tmp_path)
    m = json.loads(files[bundle.MANIFEST].content)
    p = deploy_plan.plan(typed(m), None, {}, apply._composes(files))
    assert [a.group for a in p.actions] == m["order"]
    # the traefik group creates the proxy network; the deploy creates each internal one
    # before the first group, so Consul (second in order) can join them all
    assert {(n.name, n.internal) for n in p.networks} == {(f"aini-{g}", True) for g in ("librechat", "nextcloud", "netdata")}
    consul = apply._composes(files)["consul"]
    assert set(consul["services"]["consul"]["networks"]) == {"proxy", "librechat-internal", "nextcloud-internal",
                                                             "netdata-internal"}
    assert consul["networks"]["nextcloud-internal"] == {"name": "aini-nextcloud", "external": True}
    assert set(apply._composes(files)["librechat"]["services"]["mongodb"]["networks"]) == {"internal"}
    sites_local.sync_files({k: v for k, v in files.items() if k != bundle.MANIFEST}, tmp_path / "d")
    assert (tmp_path / "d/n8n/n8n.env").stat().st_mode & 0o777 == 0o600


def test_deploy_runs_groups_in_order_and_never_puts_a_secret_in_argv(tmp_path):
    """The executor against a recording runner: what it would run, as data."""
    config, store, files = local_bundle(tmp_path)
    manifest_ = json.loads(files[bundle.MANIFEST].content)
    order = manifest_["order"]
    calls: list[tuple[str, ...]] = []

    def run(cmd):
        calls.append(cmd.argv)
        return subprocess.CompletedProcess(cmd.argv, 0, "", "")

    out = io.StringIO()
    result = apply.deploy(files, sites_local.LocalSite(tmp_path / "deployed", run), store.values(), tools=TOOLS,
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

    again = apply.deploy(files, sites_local.LocalSite(tmp_path / "deployed", run_all_up), store.values(), tools=TOOLS,
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
    apply.deploy(files, sites_local.LocalSite(tmp_path / "deployed", run), (), tools=TOOLS, console=Console(file=io.StringIO()))
    created = [c[-1] for c in calls if c[1:3] == ("network", "create")]
    assert sorted(created) == ["aini-librechat", "aini-netdata", "aini-nextcloud"]  # before the first group
    assert calls.index(next(c for c in calls if c[1:3] == ("network", "create"))) < calls.index(
        next(c for c in calls if "up" in c))
    calls.clear()
    _, without = bundle_of(netdata={"enabled": False})
    result = apply.deploy(without, sites_local.LocalSite(tmp_path / "deployed", run), (), tools=TOOLS, console=Console(file=io.StringIO()))
    # Traefik loses a route, Consul a network; the rest stays as it is
    assert [(g.group, g.action) for g in result.groups if g.action != "skip"] == [
        ("traefik", "up"), ("consul", "up"), ("netdata", "down")]
    removed = [c for c in calls if c[1:3] == ("network", "rm")]
    assert removed == [("docker", "network", "rm", "aini-netdata")]
    assert calls.index(removed[0]) > calls.index(next(c for c in calls if "down" in c))  # after its containers


def test_post_deploy_steps_run_after_their_group_and_a_failure_names_them(tmp_path):
    config, store, files = local_bundle(tmp_path)
    php = files["nextcloud/onlyoffice.config.php"].content
    assert "getenv('AINI_ONLYOFFICE_JWT_SECRET')" in php and not files["nextcloud/onlyoffice.config.php"].private
    assert not any(v in php for v in store.values())
    calls: list[tuple[str, ...]] = []

    def run(cmd, fail=False):
        calls.append(cmd.argv)
        bad = fail and "exec" in cmd.argv and "aini-nextcloud" in cmd.argv
        return subprocess.CompletedProcess(cmd.argv, 1 if bad else 0, "", "App not found: onlyoffice" if bad else "")

    apply.deploy(files, sites_local.LocalSite(tmp_path / "d", run), store.values(), tools=TOOLS, console=Console(file=io.StringIO()))
    execs = [c for c in calls if "exec" in c]
    assert execs == [("docker", "exec", "--user", "node", "--workdir", "/app", "aini-librechat", "sh", "-c", CREATE_ADMIN),
                     ("docker", "exec", "--user", "www-data", "--workdir", "/var/www/html", "aini-nextcloud", "sh",
                      "-c", ENABLE_ONLYOFFICE)]
    assert not any(v in " ".join(c) for c in execs for v in store.values())  # secrets stay in the env files
    nextcloud_up = next(i for i, c in enumerate(calls) if "aini-nextcloud" in c and "up" in c)
    assert "ps" in calls[nextcloud_up + 1]  # compose's --wait checked: every container running and healthy
    assert calls.index(execs[1]) == nextcloud_up + 2  # right after its group came up healthy

    calls.clear()
    with pytest.raises(diagnose.DeployError, match="(?s)enable the OnlyOffice connector app.*App not found") as err:
        apply.deploy(files, sites_local.LocalSite(tmp_path / "e", lambda c: run(c, fail=True)), store.values(), tools=TOOLS,
                      console=Console(file=io.StringIO()))
    assert err.value.group == "nextcloud"
    assert "nextcloud" not in deployed_at(tmp_path / "e")["groups"]  # retried on the next run


def test_without_onlyoffice_nextcloud_has_no_step_and_no_connector_config(tmp_path):
    config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"},
                            "services": {"onlyoffice": {"enabled": False}}}, "t")
    store = SecretStore(tmp_path / ".aini")
    store.ensure(catalog.secrets_for(catalog.enabled(config)))
    files = bundle.render(config, store)
    assert "nextcloud/onlyoffice.config.php" not in files
    assert "post_deploy" not in json.loads(files[bundle.MANIFEST].content)["groups"]["nextcloud"]


def test_a_group_compose_calls_up_is_checked_again_and_fails_when_a_container_is_not_healthy(tmp_path):
    """`up --wait` returned 0 while the container it had recreated was still starting, then
    failed its checks (seen in CI): the deploy asks `compose ps` itself and names it."""
    config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"},
                            "services": {n: {"enabled": False} for n in ("librechat", "n8n", "nextcloud", "onlyoffice", "netdata",
                                                                          "watchtower", "consul", "vault")}}, "t")
    store = SecretStore(tmp_path / ".aini")
    store.ensure(catalog.secrets_for(catalog.enabled(config)))
    files = bundle.render(config, store)
    states = iter(["starting", "unhealthy"])
    calls: list[tuple[str, ...]] = []

    def run(cmd):
        calls.append(cmd.argv)
        if "ps" in cmd.argv and "--project-name" in cmd.argv:
            row = {"Name": "aini-traefik", "State": "running", "Health": next(states, "unhealthy"), "Status": "Up"}
            return subprocess.CompletedProcess(cmd.argv, 0, json.dumps(row) + "\n", "")
        return subprocess.CompletedProcess(cmd.argv, 0, "", "")

    with pytest.raises(diagnose.DeployError) as err:
        apply.deploy(files, sites_local.LocalSite(tmp_path / "d", run), store.values(), tools=TOOLS, wait_timeout=600,
                     console=Console(file=io.StringIO()))
    assert err.value.group == "traefik" and err.value.containers == ["aini-traefik"]
    assert "aini-traefik is running (unhealthy; Up)" in str(err.value)
    assert "traefik" not in (deployed_at(tmp_path / "d") or {}).get("groups", {})
    assert sum(1 for c in calls if "ps" in c and "--project-name" in c) == 3  # starting, unhealthy, diagnose


def _engine(tmp_path):
    """A local site on a fake engine: every command succeeds, except `compose up` of a project
    in `failing` (a set the test changes as it goes), once. Returns (site, calls, failing)."""
    calls: list[tuple[str, ...]] = []
    failing: set[str] = set()

    def run(cmd):
        calls.append(cmd.argv)
        if "up" in cmd.argv and "--project-name" in cmd.argv and cmd.argv[cmd.argv.index("--project-name") + 1] in failing:
            failing.discard(cmd.argv[cmd.argv.index("--project-name") + 1])  # once: the rollback's up succeeds
            return subprocess.CompletedProcess(cmd.argv, 1, "", "container aini-onlyoffice is unhealthy")
        return subprocess.CompletedProcess(cmd.argv, 0, "", "")
    return sites_local.LocalSite(tmp_path / "d", run), calls, failing


def _quiet() -> dict:
    return {"tools": TOOLS, "console": Console(file=io.StringIO())}


def _bundles(tmp_path, image: str, service: str = "onlyoffice", **common):
    """The default bundle (with `common` in aini.yml), and the same with `service` at `image`."""
    store = SecretStore(tmp_path / ".aini")

    def bundle_of(**data):
        config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"},
                                **common, **data}, "t")
        store.ensure(catalog.secrets_for(catalog.enabled(config)))
        return bundle.render(config, store)
    return store, bundle_of(), bundle_of(images={"overrides": {service: image}})


def test_a_changed_group_that_fails_goes_back_to_its_last_healthy_deploy(tmp_path):
    store, healthy, broken = _bundles(tmp_path, "registry.example/onlyoffice:9.5.0")
    site, calls, failing = _engine(tmp_path)
    quiet = _quiet()
    apply.deploy(healthy, site, store.values(), **quiet)
    good = healthy["onlyoffice/compose.yml"].content
    failing.add("aini-onlyoffice")
    out = io.StringIO()
    with pytest.raises(diagnose.DeployError) as err:
        apply.deploy(broken, site, store.values(), tools=TOOLS, console=Console(file=out, width=200))
    message = str(err.value)
    assert err.value.group == "onlyoffice" and err.value.exit_code == 1
    assert "container aini-onlyoffice is unhealthy" in message  # what failed, read before the rollback
    assert ("Rolled back: onlyoffice runs its last healthy deploy again "
            "(onlyoffice docker.io/onlyoffice/documentserver:9.4.0.1), healthy.") in message
    assert "↩ onlyoffice" in out.getvalue()
    ups = [c for c in calls if "up" in c and "aini-onlyoffice" in c]
    assert len(ups) == 3  # the first deploy, the failed update, the rollback
    assert (tmp_path / "d/onlyoffice/compose.yml").read_text() == good
    assert (tmp_path / "d/.rollback/onlyoffice/compose.yml").read_text() == good
    assert deployed_at(tmp_path / "d")["groups"]["onlyoffice"]["hash"] == \
        json.loads(healthy[bundle.MANIFEST].content)["groups"]["onlyoffice"]["hash"]
    assert not any(v in message + out.getvalue() for v in store.values())


def test_a_failed_update_whose_data_cannot_go_back_is_not_rolled_back(tmp_path):
    """Nextcloud refuses to open data a newer version wrote: returning to the old image would
    fail too, so it is left as it failed and the error says why."""
    store, healthy, newer = _bundles(tmp_path, "nextcloud:34.0.5-apache", "nextcloud")
    site, calls, failing = _engine(tmp_path)
    apply.deploy(healthy, site, store.values(), tools=TOOLS, console=Console(file=io.StringIO()))
    failing.add("aini-nextcloud")
    with pytest.raises(diagnose.DeployError) as err:
        apply.deploy(newer, site, store.values(), tools=TOOLS, console=Console(file=io.StringIO()))
    assert "Not rolled back to its last healthy deploy: nextcloud 34.0.5-apache → 34.0.4-apache is a downgrade" \
        in str(err.value)
    assert len([c for c in calls if "up" in c and "aini-nextcloud" in c]) == 2  # no third: no rollback tried
    assert "nextcloud" not in deployed_at(tmp_path / "d")["groups"]  # the next run retries the update


def test_rollback_returns_a_group_to_its_deploy_before_the_last_change_and_again_goes_forward(tmp_path):
    store, first, second = _bundles(tmp_path, "registry.example/onlyoffice:9.5.0")
    site, calls, _ = _engine(tmp_path)
    quiet = _quiet()
    apply.deploy(first, site, store.values(), **quiet)
    with pytest.raises(InputError, match="no earlier deploy of 'onlyoffice' is kept"):
        apply.roll_back(site, "onlyoffice", **quiet)
    apply.deploy(second, site, store.values(), **quiet)
    hashes = [json.loads(b[bundle.MANIFEST].content)["groups"]["onlyoffice"]["hash"] for b in (first, second)]
    result = apply.roll_back(site, "onlyoffice", store.values(), **quiet)
    assert result.reason == "onlyoffice docker.io/onlyoffice/documentserver:9.4.0.1"
    assert (tmp_path / "d/onlyoffice/compose.yml").read_text() == first["onlyoffice/compose.yml"].content
    assert deployed_at(tmp_path / "d")["groups"]["onlyoffice"]["hash"] == hashes[0]
    assert (tmp_path / "d/onlyoffice/onlyoffice.env").stat().st_mode & 0o777 == 0o600
    assert apply.roll_back(site, "onlyoffice", store.values(), **quiet).reason == \
        "onlyoffice registry.example/onlyoffice:9.5.0"  # what it replaced was kept: forward again
    assert deployed_at(tmp_path / "d")["groups"]["onlyoffice"]["hash"] == hashes[1]
    # A service names its group; an unknown name lists the groups.
    assert apply.roll_back(site, "onlyoffice", store.values(), **quiet).group == "onlyoffice"
    with pytest.raises(InputError, match="'nope' is neither a deployed group nor a service of one"):
        apply.roll_back(site, "nope", **quiet)


def test_a_damaged_or_unproven_copy_is_never_gone_back_to(tmp_path):
    store, first, second = _bundles(tmp_path, "registry.example/onlyoffice:9.5.0")
    site, _, _ = _engine(tmp_path)
    quiet = _quiet()
    apply.deploy(first, site, store.values(), **quiet)
    # A run killed after writing a group's new files: they are not what the record proved.
    (tmp_path / "d/onlyoffice/compose.yml").write_text(second["onlyoffice/compose.yml"].content)
    assert rollback.proven(deployed_at(tmp_path / "d"), "onlyoffice", site.read, lambda p: False) is None
    (tmp_path / "d/onlyoffice/compose.yml").write_text(first["onlyoffice/compose.yml"].content)
    apply.deploy(second, site, store.values(), **quiet)
    assert rollback.load(site, "onlyoffice") is not None
    (tmp_path / "d/.rollback/onlyoffice/compose.yml").write_text("services: {}\n")
    assert rollback.load(site, "onlyoffice") is None
    with pytest.raises(InputError, match="no earlier deploy"):
        apply.roll_back(site, "onlyoffice", **quiet)


def test_a_failed_update_with_a_backup_before_it_goes_back_with_its_data(tmp_path):
    """Nextcloud refuses its old version on data the new one migrated: with the run taken just
    before the update, the old files go back first, then the data is restored under them."""
    store, healthy, newer = _bundles(tmp_path, "nextcloud:34.0.5-apache", "nextcloud")
    site, calls, failing = _engine(tmp_path)
    apply.deploy(healthy, site, store.values(), tools=TOOLS, console=Console(file=io.StringIO()))
    seen = []

    def put_back():  # what ops.backup does: restore the run, start the group, health-gate it
        seen.append((tmp_path / "d/nextcloud/compose.yml").read_text())
        calls.append(("put back",))

    failing.add("aini-nextcloud")
    with pytest.raises(diagnose.DeployError) as err:
        apply.deploy(newer, site, store.values(), tools=TOOLS, console=Console(file=io.StringIO()),
                     data_back={"nextcloud": rollback.DataBack("20261128T120000Z", put_back)})
    assert seen == [healthy["nextcloud/compose.yml"].content]  # the old version's files, before its data
    assert "with its data as the backup before the update saved it (run 20261128T120000Z), healthy." in str(err.value)
    ups = [c for c in calls if ("up" in c and "aini-nextcloud" in c) or c == ("put back",)]
    assert len(ups) == 3 and ups[-1] == ("put back",)  # the first deploy, the failed update, then the data
    assert deployed_at(tmp_path / "d")["groups"]["nextcloud"]["hash"] == \
        json.loads(healthy[bundle.MANIFEST].content)["groups"]["nextcloud"]["hash"]
    assert rollback.load(site, "nextcloud").backup == "20261128T120000Z"

    def refused():
        raise AiniError("restore of mariadb failed (no space left); group nextcloud is left stopped")
    failing.add("aini-nextcloud")
    with pytest.raises(diagnose.DeployError, match="(?s)with its data from the backup before the update "
                                                   r"\(run R\) failed too:.*no space left"):
        apply.deploy(newer, site, store.values(), tools=TOOLS, console=Console(file=io.StringIO()),
                     data_back={"nextcloud": rollback.DataBack("R", refused)})
    assert "nextcloud" not in deployed_at(tmp_path / "d")["groups"]


def test_rollback_of_a_group_whose_data_was_migrated_takes_the_backup_from_before_the_update(tmp_path):
    store, first, second = _bundles(tmp_path, "nextcloud:34.0.5-apache", "nextcloud")
    site, calls, _ = _engine(tmp_path)
    quiet = _quiet()
    apply.deploy(first, site, store.values(), **quiet)
    apply.deploy(second, site, store.values(), data_back={"nextcloud": rollback.DataBack("RUN", lambda: None)}, **quiet)
    with pytest.raises(InputError, match="nextcloud 34.0.5-apache → 34.0.4-apache is a downgrade"):
        apply.roll_back(site, "nextcloud", **quiet)  # no way to put its data back: refused

    def declined(group, run, fresh):
        raise InputError("confirmation did not match the project name; nothing was rolled back")
    with pytest.raises(InputError, match="nothing was rolled back"):
        apply.roll_back(site, "nextcloud", data_back=declined, **quiet)
    assert (tmp_path / "d/nextcloud/compose.yml").read_text() == second["nextcloud/compose.yml"].content
    seen = []
    result = apply.roll_back(site, "nextcloud", data_back=lambda group, run, fresh: rollback.DataBack(
        run, lambda: seen.append((group, run, fresh, (tmp_path / "d/nextcloud/compose.yml").read_text()))), **quiet)
    # old files, then its data (into the cluster it has: Nextcloud's data is not moved by dump)
    assert seen == [("nextcloud", "RUN", [], first["nextcloud/compose.yml"].content)]
    assert result.reason.endswith(", its data from run RUN")
    assert deployed_at(tmp_path / "d")["groups"]["nextcloud"]["hash"] == \
        json.loads(first[bundle.MANIFEST].content)["groups"]["nextcloud"]["hash"]


def test_a_new_postgresql_major_moves_the_data_after_the_new_files_and_before_the_group_starts(tmp_path):
    """n8n's PostgreSQL 15 -> 17: the old data set aside while the 15 files are in place, the
    new cluster made and the dump restored with the 17 ones, before the group's `up`; when 17
    then fails, its data goes back through the backup with the 15 files."""
    store, new, old = _bundles(tmp_path, "docker.io/library/postgres:15.14-bookworm", "n8n-postgres",
                               services={"n8n": {"database": "postgres"}})
    site, calls, failing = _engine(tmp_path)
    quiet = _quiet()
    apply.deploy(old, site, store.values(), **quiet)
    compose = tmp_path / "d/n8n/compose.yml"
    seen = []

    def set_aside():
        seen.append(("set aside", "postgres:15.14" in compose.read_text(), len(calls)))

    def move():
        seen.append(("move", "postgres:17" in compose.read_text(), len(calls)))

    def put_back():
        seen.append(("put back", "postgres:15.14" in compose.read_text(), len(calls)))
    back = rollback.DataBack("RUN", put_back, set_aside, move)
    failing.add("aini-n8n")
    with pytest.raises(diagnose.DeployError, match="with its data as the backup before the update saved it"):
        apply.deploy(new, site, store.values(), data_back={"n8n": back}, **quiet)
    # set aside with the 15 files, moved with the 17 ones; back with the 15 files
    assert [s[:2] for s in seen] == [("set aside", True), ("move", True), ("put back", True)]
    seen.clear()
    apply.deploy(new, site, store.values(), data_back={"n8n": back}, **quiet)
    assert [s[:2] for s in seen] == [("set aside", True), ("move", True)]
    up = [i for i, argv in enumerate(calls) if "up" in argv and "aini-n8n" in argv]
    assert up and up[-1] >= seen[1][2]  # the group came up after the move
    with pytest.raises(InputError, match="n8n-postgres 17.11-bookworm → 15.14-bookworm is a downgrade"):
        apply.deploy(old, site, store.values(), **quiet)


def test_an_updated_service_whose_data_check_fails_is_rolled_back_like_a_failed_health_gate(tmp_path):
    """The check runs once the group is healthy, for the services whose version changed only."""
    store, healthy, newer = _bundles(tmp_path, "docker.io/library/mariadb:11.8.10", "mariadb")
    _, _, older = _bundles(tmp_path, "docker.io/library/mariadb:11.8.8", "mariadb")
    site, calls, _ = _engine(tmp_path)
    quiet = _quiet()
    apply.deploy(older, site, store.values(), **quiet)
    checked = []

    def verify(services):
        checked.append(list(services))
        raise AiniError("mariadb: 0 tables in nextcloud")
    with pytest.raises(diagnose.DeployError) as err:
        apply.deploy(newer, site, store.values(), verify=verify, **quiet)
    message = str(err.value)
    assert checked == [["mariadb"]] and err.value.group == "nextcloud"
    assert "group 'nextcloud' is up, but the check of its data after the update failed: mariadb: 0 tables" in message
    assert "Rolled back: nextcloud runs its last healthy deploy again" in message
    checked.clear()
    apply.deploy(newer, site, store.values(), verify=lambda services: checked.append(list(services)), **quiet)
    assert checked == [["mariadb"]]
    checked.clear()
    apply.deploy(healthy, site, store.values(), verify=lambda services: checked.append(list(services)), **quiet)
    assert checked == [["mariadb"]]  # back to the pin: a version change too
