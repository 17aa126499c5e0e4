"""The whole default stack on the local target, deployed by aini's deploy step, checked
from outside through Traefik over HTTPS with the local CA.

The tests run in file order against one deployed stack (module fixture); each leaves the
stack healthy for the next.
"""
from __future__ import annotations

import io
import json
import os
import re
import random
import subprocess
import sys
import time

import pytest
import yaml
from rich.console import Console

from aini import catalog
from aini.controlplane import breakglass, registry
from aini.controlplane.bootstrap import State, secret_paths
from aini.controlplane.vault import VaultClient
from aini.deploy import versions
from aini.deploy.diagnose import DeployError
from aini.errors import AiniError
from aini.render.compose import pinned_ref
from aini.catalog import backup as backup_catalog
from aini.catalog.librechat import CREATE_ADMIN
from aini.catalog.networks import FIXED_IPS
from tests.e2e.stack import PASSPHRASE, PASSPHRASE_ENV, Stack
from tests.harness import stack_images

pytestmark = pytest.mark.sandbox

# service -> (path, text its own answer contains). Doubles also name themselves in the
# X-Aini-Double header; the real ones (Traefik, n8n, Netdata) answer with their own APIs.
ANSWERS = {
    "traefik": ("/api/version", '"Version":"3.7.15"'),
    "consul": ("/v1/status/leader", "127.0.0.1:8300"),
    "vault": ("/ui/", "Vault (AINI test double)"),
    "librechat": ("/health", "OK"),
    "n8n": ("/healthz", '"status":"ok"'),
    "nextcloud": ("/status.php", '"installed":true'),
    "onlyoffice": ("/healthcheck", "true"),
    "netdata": ("/api/v1/info", '"version"'),
}
REAL = {"traefik", "n8n", "netdata"}


def routed(stack: Stack) -> list:
    return [s for s in catalog.enabled(stack.config) if s.route]


def test_every_service_answers_over_https_with_the_local_ca(stack: Stack):
    specs = routed(stack)
    assert {s.name for s in specs} == set(ANSWERS), "a routed service has no e2e check"
    for spec in specs:
        host = stack.host(spec.name)
        path, marker = ANSWERS[spec.name]
        # The certificate chain is verified against the local CA by the client context.
        r = stack.wait_https(host, path, auth=stack.admin() if spec.route.admin else None)
        assert marker in r.text, f"{host}{path}: {r.status} {r.text[:200]}"
        assert host in r.peer_names
        if spec.name not in REAL:
            assert r.headers["X-Aini-Double"] == spec.name


def test_http_redirects_to_https(stack: Stack):
    for spec in routed(stack):
        host = stack.host(spec.name)
        r = stack.http(host, "/some/path?x=1")
        assert r.status in (301, 308), (host, r.status)
        # The HTTPS port is not 443 here, so the redirect must name it (target.https_port).
        assert r.headers["Location"] == f"https://{host}:{stack.https_port}/some/path?x=1"


def test_hsts_on_every_route(stack: Stack):
    for spec in routed(stack):
        path, _ = ANSWERS[spec.name]
        r = stack.https(stack.host(spec.name), path, auth=stack.admin() if spec.route.admin else None)
        assert r.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"


def test_admin_uis_need_the_admin_credentials(stack: Stack):
    admins = [s for s in routed(stack) if s.route.admin]
    assert {s.name for s in admins} == {"traefik", "consul", "vault", "netdata"}
    user, password = stack.admin()
    for spec in admins:
        host, (path, _) = stack.host(spec.name), ANSWERS[spec.name]
        assert stack.https(host, path).status == 401
        assert stack.https(host, path, auth=(user, password + "x")).status == 401
        r = stack.https(host, path, auth=(user, password))
        assert r.status == 200, (host, r.status)
        assert "Authorization" not in r.text  # removeHeader: backends never see credentials


def test_unknown_host_gets_no_tls_at_all(stack: Stack):
    assert stack.tls_refused("nothing-here.localhost", timeout=0)


def test_mariadb_has_the_nextcloud_database_and_user(stack: Stack):
    password = stack.store.get("nextcloud_db_password")
    query = ("SELECT CURRENT_USER(), @@GLOBAL.tx_isolation, @@GLOBAL.character_set_server, "
             "(SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'nextcloud')")

    def as_nextcloud(pw: str):
        # The password reaches the client through the environment of `docker exec`, not argv.
        return stack.docker_run("exec", "-e", "MYSQL_PWD", "aini-mariadb", "mariadb", "-unextcloud",
                                "-h127.0.0.1", "-N", "-e", query, env={**os.environ, "MYSQL_PWD": pw})

    r = as_nextcloud(password)
    assert r.returncode == 0, r.stderr
    # The user and database of the rendered env, and the catalog's server arguments.
    assert r.stdout.split() == ["nextcloud@%", "READ-COMMITTED", "utf8mb4", "1"]
    r = as_nextcloud(password + "x")
    assert r.returncode != 0 and "Access denied" in r.stderr


def test_onlyoffice_connector_is_enabled_and_configured_without_a_secret_in_files(stack: Stack):
    occ = ("exec", "--user", "www-data", "--workdir", "/var/www/html", "aini-nextcloud")
    apps = json.loads(stack.docker_cmd(*occ, "php", "occ", "app:list", "--output=json"))
    assert "onlyoffice" in apps["enabled"]
    # The step ran once, installing then enabling (the double's occ keeps a log of calls).
    log = [line for line in stack.docker_cmd(*occ, "cat", ".aini-double-occ.log").splitlines()
           if line.startswith("app:")]
    assert log[:3] == ["app:list --output=json", "app:install onlyoffice", "app:enable onlyoffice"]
    # The entrypoint installed Nextcloud into a config directory it owns (AINI's file is
    # mounted where the entrypoint copies from, not into the volume's config directory).
    owner = stack.docker_cmd("exec", "aini-nextcloud", "stat", "-c", "%U", "/var/www/html/config",
                             "/var/www/html/config/config.php")
    assert owner.split() == ["www-data", "www-data"]
    assert stack.docker_cmd("exec", "aini-nextcloud", "printenv", "APACHE_BODY_LIMIT").strip() == str(10 * 1024**3)
    # The connector's daily check runs in the cron container: it reaches OnlyOffice, which
    # fetches the test document from Nextcloud's private address (allowed) with the JWT.
    check = stack.docker_cmd("exec", "--user", "www-data", "aini-nextcloud-cron", "php", "-f",
                             "/var/www/html/cron.php")
    assert "availability check is finished successfully" in check, check
    config = stack.docker_cmd(*occ, "cat", "config/onlyoffice.config.php")
    assert "getenv('AINI_ONLYOFFICE_JWT_SECRET')" in config
    assert stack.store.get("onlyoffice_jwt_secret") not in config
    env = stack.docker_cmd("exec", "aini-nextcloud", "printenv", "AINI_ONLYOFFICE_URL")
    assert env.strip() == f"https://{stack.host('onlyoffice')}:{stack.https_port}/"


def test_second_deploy_recreates_nothing(stack: Stack, figures):
    before = stack.containers()
    assert before and all(state == "running" for _, state in before.values())
    start = time.monotonic()
    result = stack.up()
    seconds = time.monotonic() - start
    assert result.touched == []
    assert stack.containers() == before
    figures({"deploy_noop_seconds": round(seconds, 2)})


def _nextcloud_rows(stack: Stack) -> str:
    """Every row of every table of Nextcloud's database, in order, as text."""
    script = ('export MYSQL_PWD="$MARIADB_ROOT_PASSWORD"; for t in $(mariadb -uroot -N -B -e "SHOW TABLES" nextcloud); '
              'do echo "== $t"; mariadb -uroot -N -B --binary-as-hex -e "SELECT * FROM \\`$t\\` ORDER BY 1" nextcloud; done')
    return stack.docker_cmd("exec", "aini-mariadb", "sh", "-c", script)


# The Nextcloud double writes no tables of its own: these stand for Nextcloud's, with the column
# types its file cache and app config use (utf8mb4 paths, bigints, binary checksums, NULLs).
_NEXTCLOUD_LIKE = (
    "CREATE TABLE aini_filecache (fileid BIGINT PRIMARY KEY, path VARCHAR(4000), mtime BIGINT, size BIGINT, "
    "etag VARCHAR(40), checksum VARBINARY(255), stamped DATETIME(6), note TEXT NULL) DEFAULT CHARSET=utf8mb4; "
    "INSERT INTO aini_filecache WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000) "
    "SELECT n, CONCAT('files/ünïcødé ✓/', n, '.md'), 1764000000 + n, n * 4096, MD5(n), UNHEX(SHA2(n, 256)), "
    "TIMESTAMP('2026-11-28 12:00:00.123456') + INTERVAL n SECOND, IF(n % 7 = 0, NULL, REPEAT('x', n % 300)) FROM s; "
    "CREATE TABLE aini_appconfig (appid VARCHAR(32), configkey VARCHAR(64), configvalue LONGTEXT, "
    "PRIMARY KEY (appid, configkey)) DEFAULT CHARSET=utf8mb4; "
    "INSERT INTO aini_appconfig VALUES ('core', 'installedat', '1764331200.5'), "
    "('onlyoffice', 'DocumentServerUrl', 'https://office.localhost/'), ('files', 'quote', 'it''s “quoted”')")


def test_mariadb_10_11_to_11_8_keeps_every_row_of_nextcloud(stack: Stack, figures, tmp_path_factory):
    """The stack's MariaDB is bookworm's 10.11, as on a site deployed before the pin moved; the
    pin's series, 11.8 (trixie's), goes in with a backup first and the image's own
    mariadb-upgrade (MARIADB_AUTO_UPGRADE). Every row of Nextcloud's database is identical,
    and the stack stays on 11.8 for the tests after this one."""
    _mariadb(stack, _NEXTCLOUD_LIKE)
    assert _mariadb(stack, "SELECT VERSION()").startswith("10.11.")
    before = _nextcloud_rows(stack)
    assert "== aini_filecache" in before and "files/ünïcødé ✓/1000.md" in before and "“quoted”" in before
    stack.data["backup"] = {"repository": str(tmp_path_factory.mktemp("restic-mariadb-major") / "repository")}
    try:
        stack.data["images"]["overrides"]["mariadb"] = stack_images.mariadb_image("11.8")
        out = io.StringIO()
        start = time.monotonic()
        assert stack.up(console=Console(file=out, width=250)).touched == ["nextcloud"]
        figures({"mariadb_10_11_to_11_8_update_seconds": round(time.monotonic() - start, 1)})
        said = out.getvalue()
        assert re.search(r"~ mariadb +10\.11\.\S+ → 11\.8\.\S+: 10\.11 → 11\.8: the image's mariadb-upgrade", said), said
        assert "backed up nextcloud before the update" in said
        assert re.search(r"mariadb: checked after the update: [1-9]\d* tables in nextcloud", said), said
        assert _mariadb(stack, "SELECT VERSION()").startswith("11.8.")
        logs = stack.docker_cmd("logs", "aini-mariadb")
        assert "entrypoint: mariadb-upgrade finished" in logs, logs[-2000:]
        saved = stack.docker_cmd("exec", "aini-mariadb", "sh", "-c", "ls /var/lib/mysql/system_mysql_backup_*.sql.zst")
        assert "system_mysql_backup_10.11." in saved
        assert _nextcloud_rows(stack) == before
        stack.wait_https(stack.host("nextcloud"), "/status.php")
    finally:
        stack.data.pop("backup", None)
        _mariadb(stack, "DROP TABLE IF EXISTS aini_filecache, aini_appconfig")


def _image_of(stack: Stack, container: str) -> str:
    return stack.docker_cmd("inspect", "-f", "{{.Config.Image}}", container).strip()


def test_an_update_that_never_becomes_healthy_is_rolled_back_naming_it_and_others_stay_up(stack: Stack, figures):
    before = stack.containers()
    running = _image_of(stack, "aini-onlyoffice")
    broken = json.loads(json.dumps(stack.data))
    broken["images"]["overrides"]["onlyoffice"] = stack_images.double_image("onlyoffice", mode="broken")
    out = io.StringIO()
    start = time.monotonic()
    with pytest.raises(DeployError) as info:
        stack.up(broken, wait_timeout=45, console=Console(file=out, width=200))
    figures({"deploy_failure_and_rollback_seconds": round(time.monotonic() - start, 1)})
    err = info.value
    message = str(err)
    assert err.exit_code == 1 and err.group == "onlyoffice" and err.containers == ["aini-onlyoffice"]
    assert "aini-onlyoffice" in message
    assert "returned error: 500" in message  # its last health check (curl -f)
    assert "onlyoffice-double: config JWT_SECRET=***" in message  # its logs, scrubbed, read before the rollback
    assert f"Rolled back: onlyoffice runs its last healthy deploy again (onlyoffice {running}), healthy." in message
    secret = stack.store.get("onlyoffice_jwt_secret")
    assert secret not in message and secret not in out.getvalue()
    after = stack.containers()
    for name, (cid, state) in before.items():
        if name != "aini-onlyoffice":
            assert after[name] == (cid, "running"), name
    assert after["aini-onlyoffice"][1] == "running" and _image_of(stack, "aini-onlyoffice") == running
    stack.wait_https(stack.host("onlyoffice"), "/healthcheck")
    # The deploy is as it was before the update: the same command changes nothing.
    assert stack.up().touched == []
    assert stack.containers() == after


def test_aini_rollback_returns_a_group_to_its_version_before_a_successful_update(stack: Stack):
    """A new version (the same image under a newer tag) is deployed; `aini rollback` puts the
    previous one back, health-gated, and `aini up` then has nothing to do."""
    running = _image_of(stack, "aini-onlyoffice")
    newer = running.rsplit(":", 1)[0] + ":9.9.9-e2e"
    stack.docker_cmd("tag", running, newer)
    try:
        update = json.loads(json.dumps(stack.data))
        update["images"]["overrides"]["onlyoffice"] = newer
        assert stack.up(update).touched == ["onlyoffice"]
        assert _image_of(stack, "aini-onlyoffice") == newer
        code, out, err = _cli(stack, "rollback", "onlyoffice")
        assert code == 0, out + err
        assert "Rolled back onlyoffice in" in out and f"onlyoffice {running}" in out, out
        assert "aini up deploys aini.yml's version of onlyoffice again" in out
        assert "Traceback" not in err
        assert _image_of(stack, "aini-onlyoffice") == running
        record = json.loads(_consul(stack).kv_get("aini/deploy/onlyoffice"))
        assert record["image"] == running and record["history"][0]["image"] == newer  # Consul was told
        stack.wait_https(stack.host("onlyoffice"), "/healthcheck")
        assert stack.up().touched == []  # the rollback's version is aini.yml's
        code, out, err = _cli(stack, "rollback", "no-such-group")
        assert code == 2 and "'no-such-group' is neither a deployed group nor a service of one" in err, err
        assert "Traceback" not in err
    finally:
        stack.docker_cmd("rmi", newer, check=False)


def test_an_update_that_migrated_the_data_and_failed_is_rolled_back_with_its_data(stack: Stack, tmp_path_factory,
                                                                                   figures):
    """Nextcloud 34.0.5 upgrades the volume (its version.php, as upstream's entrypoint does)
    and never becomes healthy; 34.0.4 refuses data a newer version wrote, so the files alone
    cannot go back: the backup taken before the update is restored under them."""
    running = _image_of(stack, "aini-nextcloud")
    version_php = ("exec", "aini-nextcloud", "cat", "/var/www/html/version.php")
    before = stack.docker_cmd(*version_php)
    stack.data["backup"] = {"repository": str(tmp_path_factory.mktemp("restic-rollback") / "repository")}
    _mariadb(stack, "CREATE TABLE aini_update (v TEXT); INSERT INTO aini_update VALUES ('before')")
    stack.docker_cmd("exec", "aini-nextcloud", "sh", "-c", "echo before > /var/www/html/aini-update-marker")
    try:
        update = json.loads(json.dumps(stack.data))
        update["images"]["overrides"]["nextcloud"] = stack_images.double_image("nextcloud", mode="broken",
                                                                               version="34.0.5")
        out = io.StringIO()
        start = time.monotonic()
        with pytest.raises(DeployError) as info:
            stack.up(update, wait_timeout=20, console=Console(file=out, width=250))
        figures({"failed_update_rolled_back_with_data_seconds": round(time.monotonic() - start, 1)})
        message = str(info.value)
        assert info.value.exit_code == 1 and info.value.group == "nextcloud", message
        assert "Initializing nextcloud 34.0.5.0" in message  # its logs: it did upgrade the data
        assert re.search(r"Rolled back: nextcloud runs its last healthy deploy again \(.+\) with its data as the "
                         r"backup before the update saved it \(run \S+\), healthy\.", message), message
        assert f"nextcloud {running}" in message
        assert "Traceback" not in message and "backed up nextcloud before the update" in out.getvalue()
        assert _image_of(stack, "aini-nextcloud") == running
        assert stack.docker_cmd(*version_php) == before
        assert stack.docker_cmd("exec", "aini-nextcloud", "cat", "/var/www/html/aini-update-marker").strip() == "before"
        assert _mariadb(stack, "SELECT v FROM aini_update") == "before"
        stack.wait_https(stack.host("nextcloud"), "/status.php")
        assert stack.up().touched == []  # its deploy record is the old version's again
    finally:
        stack.data.pop("backup", None)
        _mariadb(stack, "DROP TABLE IF EXISTS aini_update")
        stack.docker_cmd("exec", "aini-nextcloud", "rm", "-f", "/var/www/html/aini-update-marker", check=False)


def test_aini_rollback_nextcloud_after_a_successful_update_takes_its_data_back_too(stack: Stack, tmp_path_factory):
    """34.0.5 upgraded the data and runs; 34.0.4 cannot open it, so `aini rollback nextcloud`
    restores the backup taken before the update under the old files, once confirmed."""
    running = _image_of(stack, "aini-nextcloud")
    version_php = ("exec", "aini-nextcloud", "cat", "/var/www/html/version.php")
    before = stack.docker_cmd(*version_php)
    stack.data["backup"] = {"repository": str(tmp_path_factory.mktemp("restic-rollback-cli") / "repository")}
    try:
        update = json.loads(json.dumps(stack.data))
        update["images"]["overrides"]["nextcloud"] = stack_images.double_image("nextcloud", version="34.0.5")
        assert stack.up(update).touched == ["nextcloud"]
        assert "34,0,5,0" in stack.docker_cmd(*version_php)
        code, out, err = _cli(stack, "rollback", "nextcloud", "--confirm", "not-the-project")
        assert code == 2 and "nothing was rolled back" in err, out + err
        assert _image_of(stack, "aini-nextcloud") != running
        code, out, err = _cli(stack, "rollback", "nextcloud", "--confirm", stack.config.project)
        assert code == 0, out + err
        assert re.search(r"Rolled back nextcloud in \d+ s: .*, its data from run \S+\.", out), out
        assert "Traceback" not in err
        assert _image_of(stack, "aini-nextcloud") == running
        assert stack.docker_cmd(*version_php) == before
        stack.wait_https(stack.host("nextcloud"), "/status.php")
        assert stack.up().touched == []
    finally:
        stack.data.pop("backup", None)


def _n8n_rows(stack: Stack, cookie: str) -> dict[str, set]:
    """What n8n's API lists: its workflows and its credentials, by id and name."""
    rows = {}
    for kind in ("workflows", "credentials"):
        r = stack.https(stack.host("n8n"), f"/rest/{kind}", headers={**BROWSER, "Cookie": cookie})
        assert r.status == 200, r.text[:300]
        rows[kind] = {(row["id"], row["name"]) for row in json.loads(r.body)["data"]}
    return rows


def test_postgresql_15_to_17_moves_n8ns_workflows_and_credentials_to_a_new_cluster(stack: Stack, figures,
                                                                                    tmp_path_factory):
    """n8n on PostgreSQL 15 (bookworm's), then on the pin's major, 17 (trixie's): aini up backs
    the group up, sets the 15 cluster aside, makes a 17 cluster and restores the dump into it.
    Every workflow and credential is there through n8n's API; the old cluster stays until the
    next backup, which removes it."""
    pg15, pg17 = stack_images.postgres_image(15), stack_images.postgres_image(17)
    saved = json.loads(json.dumps(stack.data))
    postgres = ("exec", "aini-n8n-postgres", "psql", "-U", "n8n", "-d", "n8n", "-tAc")
    try:
        stack.data["services"] = {**stack.data.get("services", {}), "n8n": {"database": "postgres"}}
        stack.data["images"]["overrides"]["n8n-postgres"] = pg15
        assert "n8n" in stack.up().touched
        assert stack.docker_cmd(*postgres, "SHOW server_version").startswith("15.")
        cookie = _n8n_login(stack)
        host, headers = stack.host("n8n"), {**BROWSER, "Cookie": cookie}
        for n in range(3):
            workflow = {"name": f"aini-pg-{n}", "nodes": [], "connections": {}, "settings": {}, "active": False}
            r = stack.https(host, "/rest/workflows", method="POST", body=json.dumps(workflow).encode(), headers=headers)
            assert r.status == 200, r.text[:300]
        credential = {"name": "aini-pg-credential", "type": "httpHeaderAuth",
                      "data": {"name": "X-Aini-Key", "value": "kept-across-majors"}}
        r = stack.https(host, "/rest/credentials", method="POST", body=json.dumps(credential).encode(), headers=headers)
        assert r.status == 200, r.text[:300]
        before = _n8n_rows(stack, cookie)
        assert len(before["workflows"]) >= 3 and ("aini-pg-credential" in {n for _, n in before["credentials"]})

        stack.data["images"]["overrides"]["n8n-postgres"] = pg17
        stack.data.pop("backup", None)
        code, out, err = _cli(stack, "up")  # the move needs the backup it goes through
        assert code == 2 and "n8n-postgres: the new major takes the data through the backup" in err, out + err
        assert stack.docker_cmd(*postgres, "SHOW server_version").startswith("15.")
        stack.data["backup"] = {"repository": str(tmp_path_factory.mktemp("restic-pg-major") / "repository")}
        out = io.StringIO()
        start = time.monotonic()
        assert "n8n" in stack.up(console=Console(file=out, width=250)).touched
        figures({"postgres_15_to_17_update_seconds": round(time.monotonic() - start, 1)})
        said = out.getvalue()
        assert re.search(r"n8n-postgres +15\.\S+ → 17\.\S+: 15 → 17: dump, new cluster, restore", said), said
        # a run of exactly n8n's group, after the images are there and before the group is touched
        assert "backup first: n8n (a run into backup.repository, before the group is touched)" in said, said
        run = re.search(r"backed up n8n before the update: run (\S+)", said).group(1)
        kept = re.search(r"n8n-postgres: its old data kept in the volume (\S+) until the next backup", said).group(1)
        assert said.index("backed up n8n") < said.index("stopping it to move") < said.index("kept in the volume")
        workflows = len(before["workflows"])
        assert f"n8n-postgres: checked after the update: {workflows} workflows" in said, said  # the drill's check
        code, listed, err = _cli(stack, "backup", "list", "--json")
        assert code == 0, err
        assert {s["service"] for s in json.loads(listed) if s["run"] == run} == {"n8n", "n8n-postgres"}
        assert stack.docker_cmd(*postgres, "SHOW server_version").startswith("17.")
        assert _image_of(stack, "aini-n8n-postgres") == pg17
        assert _n8n_rows(stack, _n8n_login(stack)) == before
        old = stack.docker_cmd("run", "--rm", "-v", f"{kept}:/old", "--entrypoint", "cat", pg15, "/old/PG_VERSION")
        assert old.strip() == "15"  # the 15 cluster as it was, set aside

        code, out, err = _cli(stack, "backup", "--only", "n8n")
        assert code == 0, out + err
        assert f"removed {kept}: the old data an upgrade set aside" in err, out + err
        assert kept not in stack.docker_cmd("volume", "ls", "-q")
    finally:
        stack.data.clear()
        stack.data.update(saved)
        stack.up()
        stack.docker_cmd("volume", "rm", "aini-n8n-postgres", check=False)


def test_missing_image_stops_before_touching_anything(stack: Stack):
    before = stack.containers()
    data = json.loads(json.dumps(stack.data))
    # A registry on a closed loopback port: the pull fails at once, no traffic leaves.
    data["images"]["overrides"]["watchtower"] = "127.0.0.1:9/aini-e2e/not-built:1.0"
    with pytest.raises(AiniError) as info:
        stack.up(data, pull_timeout=60)
    message = str(info.value)
    assert info.value.exit_code == 1
    assert "watchtower: 127.0.0.1:9/aini-e2e/not-built:1.0" in message
    assert "images:" in message and "mirror:" in message and "overrides:" in message
    assert stack.containers() == before


def test_a_nextcloud_pin_that_skips_a_major_is_refused_before_anything_changes(stack: Stack):
    """Upstream's entrypoint would stop on such data (the double does too): the running
    version is read from the engine, the refusal names the path, and nothing is pulled or
    recreated."""
    before = stack.containers()
    running = stack.docker_cmd("inspect", "-f", "{{.Config.Image}}", "aini-nextcloud").strip()
    major = versions.version_of(running)[0]
    assert major == versions.version_of(catalog.by_name("nextcloud").pinned)[0]  # the double stands for the pin
    jump = json.loads(json.dumps(stack.data))
    jump["images"]["overrides"]["nextcloud"] = f"127.0.0.1:9/aini-e2e/nextcloud:{major + 2}.0.1-apache"
    path = f"{major} → {major + 1} → {major + 2}"
    other = stack.project_dir / "jump.yml"
    other.write_text(yaml.safe_dump(jump, sort_keys=False))
    env = {**os.environ, **PASSPHRASE_ENV, "AINI_DOCKER": stack.docker, "COLUMNS": "250"}
    r = subprocess.run([sys.executable, "-m", "aini", "-c", str(other), "plan", "--deployed", "--json"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert f"~ nextcloud      {running} → {jump['images']['overrides']['nextcloud']}: refused ({path})" in \
        json.loads(r.stdout)["deploy_plan"]
    r = subprocess.run([sys.executable, "-m", "aini", "-c", str(other), "up"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refused before anything changed" in r.stderr and path in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "pulling" not in r.stderr
    assert stack.containers() == before


CLAIM = {"email": "attacker@example.org", "firstName": "Mallory", "lastName": "X", "password": "Cl4im-it-first!"}
BROWSER = {"browser-id": "aini-e2e", "Content-Type": "application/json"}


def _n8n_login(stack: Stack) -> str:
    """The owner AINI made: aini.yml's email and AINI's generated password."""
    host = stack.host("n8n")
    password = stack.store.get("n8n_owner_password")
    body = json.dumps({"emailOrLdapLoginId": stack.config.email, "password": password}).encode()
    # n8n mounts its REST controllers a moment after it reports ready: poll, bounded.
    r = stack.wait_https(host, "/rest/login", ok=lambda r: r.status != 404, method="POST", body=body,
                         headers=BROWSER)
    assert r.status == 200, r.text[:300]
    return r.cookie()


def test_n8n_has_its_owner_from_the_first_start_and_nobody_can_claim_it(stack: Stack):
    host = stack.host("n8n")
    r = stack.https(host, "/rest/settings", headers=BROWSER)
    assert r.status == 200 and json.loads(r.body)["data"]["userManagement"]["showSetupOnFirstLoad"] is False, r.text[:300]
    r = stack.https(host, "/rest/owner/setup", method="POST", body=json.dumps(CLAIM).encode(), headers=BROWSER)
    assert r.status >= 400, r.text[:300]  # the first visitor gets no owner account
    r = stack.https(host, "/rest/login", method="POST", headers=BROWSER, body=json.dumps(
        {"emailOrLdapLoginId": CLAIM["email"], "password": CLAIM["password"]}).encode())
    assert r.status == 401, r.text[:300]


CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by .ci/run


def test_a_real_browser_signs_in_to_n8n_as_the_owner_aini_made_and_finds_no_setup_form(stack: Stack):
    """Debian's Chromium, headless, through Traefik: a new visitor is sent to the sign-in
    page (never to n8n's owner setup), and the owner's credentials from `aini up` work."""
    from playwright.sync_api import sync_playwright

    host = stack.host("n8n")
    base = f"https://{host}:{stack.https_port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox",  # root in CI; the page is our own
            f"--host-resolver-rules=MAP {host} 127.0.0.1"])
        try:
            # the local CA is checked by every other test; the browser need not trust it too
            page = browser.new_context(ignore_https_errors=True).new_page()
            for path in ("/", "/setup"):
                page.goto(base + path, wait_until="networkidle")
                page.wait_for_url("**/signin**", timeout=30_000)
            page.fill('input[name="emailOrLdapLoginId"]', stack.config.email)
            page.fill('input[name="password"]', stack.store.get("n8n_owner_password"))
            page.click('[data-test-id="form-submit-button"]')
            page.wait_for_url(lambda url: "/signin" not in url, timeout=30_000)
            assert page.url.startswith(base), page.url
        finally:
            browser.close()


def test_librechat_has_its_first_user_an_admin_and_making_it_again_changes_nothing(stack: Stack):
    """Registration is off: without the user AINI makes, nobody could sign in."""
    def login(password: str):
        return stack.https(stack.host("librechat"), "/api/auth/login", method="POST",
                           headers={"Content-Type": "application/json"},
                           body=json.dumps({"email": stack.config.email, "password": password}).encode())

    password = stack.store.get("librechat_admin_password")
    r = login(password)
    assert r.status == 200 and json.loads(r.body)["user"]["role"] == "ADMIN", r.text[:300]
    assert login(password + "x").status == 404
    # The step again, as the next deploy of its group runs it: it succeeds and makes no one new.
    again = stack.docker_run("exec", "--user", "node", "--workdir", "/app", "aini-librechat", "sh", "-c", CREATE_ADMIN)
    assert again.returncode == 0 and password not in again.stdout + again.stderr, again.stdout + again.stderr
    assert login(password).status == 200


def test_n8n_workflow_survives_a_restart_of_its_group(stack: Stack):
    host = stack.host("n8n")
    cookie = _n8n_login(stack)
    workflow = {"name": "aini-e2e-workflow", "nodes": [], "connections": {}, "settings": {}, "active": False}
    r = stack.https(host, "/rest/workflows", method="POST", body=json.dumps(workflow).encode(),
                    headers={**BROWSER, "Cookie": cookie})
    assert r.status == 200, r.text[:300]
    workflow_id = json.loads(r.body)["data"]["id"]

    # Containers gone (volumes kept), then the same deploy command brings them back.
    assert stack.compose("n8n", "down").returncode == 0
    old = stack.containers()
    assert "aini-n8n" not in old
    result = stack.up()
    assert result.touched == ["n8n"]
    stack.wait_https(host, "/healthz")
    r = stack.https(host, "/rest/workflows", headers={**BROWSER, "Cookie": _n8n_login(stack)})
    assert r.status == 200, r.text[:300]
    names = {w["id"]: w["name"] for w in json.loads(r.body)["data"]}
    assert names.get(workflow_id) == "aini-e2e-workflow"


def _aini(stack: Stack, *args: str, stdin: str = "", timeout: float = 900) -> subprocess.Popen:
    config_path = stack.project_dir / "aini.yml"
    config_path.write_text(yaml.safe_dump(stack.data, sort_keys=False))
    proc = subprocess.Popen([sys.executable, "-m", "aini", "-c", str(config_path), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **PASSPHRASE_ENV, "AINI_DOCKER": stack.docker, "COLUMNS": "250"})
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    return proc


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    """Wait for a process started by _aini (its stdin is already closed)."""
    import threading

    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    out = proc.stdout.read()  # type: ignore[union-attr]
    proc.wait(timeout=timeout)
    reader.join(timeout=30)
    return out, "".join(err)


def _started(stack: Stack) -> dict[str, str]:
    """Container name -> when it last started."""
    names = stack.docker_cmd("ps", "--format", "{{.Names}}").split()
    out = stack.docker_cmd("inspect", "-f", "{{.Name}} {{.State.StartedAt}}", *names)
    return {line.split()[0].lstrip("/"): line.split()[1] for line in out.splitlines() if line.strip()}


def _damaged_run(stack: Stack, repository, run: str, service: str, filename: str, data: bytes) -> None:
    """A run whose manifest vouches for a dump that is not one (made with aini's own restic commands)."""
    from aini.catalog import backup as backup_catalog
    from aini.docker import restic
    from aini.docker.cmd import Tools
    from aini.render.compose import pinned_ref

    repo = restic.Repository(pinned_ref(backup_catalog.RESTIC, stack.config.images),
                             str(stack.deploy_dir / "restic.env"), host=stack.config.project, path=str(repository))
    tools = Tools((stack.docker,), ())
    for cmd, stdin in ((restic.backup_stdin_cmd(tools, repo, service, run, filename), data),
                       (restic.manifest_cmd(tools, repo, run, [service]), b'{"damaged": true}')):
        r = subprocess.run(cmd.argv, input=stdin, capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr


def _consul(stack: Stack):
    from aini.controlplane.consul import ConsulClient

    return ConsulClient(f"http://{FIXED_IPS['consul']}:8500", token=State.load(stack.project_dir).consul_deploy_token)


def _vault(stack: Stack) -> VaultClient:
    client = VaultClient(f"http://{FIXED_IPS['vault']}:8200")
    creds = State.load(stack.project_dir).approle
    assert creds is not None
    return client.login_approle(creds)


def test_vault_holds_every_secret_and_the_root_token_is_only_in_the_break_glass_file(stack: Stack):
    client = _vault(stack)
    store = stack.store
    for name, path in secret_paths(catalog.enabled(stack.config)).items():
        if store.get(name) is not None:
            assert client.kv_get(path) == {"value": store.get(name)}, name
    material = breakglass.load(stack.project_dir / ".aini" / "breakglass.enc", PASSPHRASE)
    root = material.vault_root_token
    assert root and len(material.vault_unseal_keys) == 5
    # Nowhere on the "host" but the encrypted file: not in the bundle, not in any container's
    # environment or volume (the Vault double keeps only token hashes, as Vault does).
    volumes = stack.docker_cmd("volume", "ls", "-q", "--filter", "label=aini.project=e2e").split()
    mounts = [stack.docker_cmd("volume", "inspect", "-f", "{{.Mountpoint}}", v).strip() for v in volumes]
    assert any(m.endswith("aini-vault-data/_data") for m in mounts), mounts
    r = subprocess.run(["grep", "-rlF", root, str(stack.project_dir), *mounts], capture_output=True, text=True)
    assert r.stdout == "", r.stdout
    for name in stack.containers():
        assert root not in stack.docker_cmd("inspect", name)
    # Vault's audit log (its container's log) records the deploy's requests, tokens HMAC-ed.
    log = stack.docker_run("logs", "aini-vault").stdout
    records = [json.loads(line) for line in log.splitlines() if line.startswith('{"time"')]
    assert any(r["request"]["path"].startswith("aini/data/") for r in records), log[-2000:]
    assert all(r["auth"]["client_token"].startswith("hmac-sha256:") for r in records if r["auth"]["client_token"])
    assert root not in log and not [v for v in store.values() if len(v) >= 16 and v in log]


def test_the_deploy_approle_logs_in_from_the_host_only(stack: Stack):
    """Bound to the proxy network's gateway: the credentials in .aini/controlplane.json are
    useless from a container, even one on the same network as Vault."""

    creds = State.load(stack.project_dir).approle
    assert creds is not None
    _vault(stack).kv_list("librechat")  # from the host: works
    login = ("import json, sys, urllib.request, urllib.error\n"
             "request = urllib.request.Request('http://aini-vault:8200/v1/auth/approle/login', sys.stdin.buffer.read())\n"
             "try:\n    print(urllib.request.urlopen(request, timeout=10).status)\n"
             "except urllib.error.HTTPError as exc:\n    print(exc.code, exc.read().decode())\n")
    body = json.dumps({"role_id": creds.role_id, "secret_id": creds.secret_id})  # on stdin, not in argv
    r = subprocess.run([stack.docker, "exec", "-i", "aini-librechat", "python3", "-c", login], input=body,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("400") and "unauthorized by CIDR restrictions" in r.stdout, r.stdout


def test_consul_checks_every_probed_service_and_a_stopped_one_turns_critical(stack: Stack):
    from aini.controlplane import registry
    from aini.controlplane.consul import ConsulClient

    consul = ConsulClient(f"http://{FIXED_IPS['consul']}:8500", token=State.load(stack.project_dir).consul_deploy_token)
    probed = [r.name for r in registry.registrations(stack.config, json.loads(
        (stack.deploy_dir / "manifest.json").read_text()))]
    # every enabled service but Consul itself, databases and portless workers included
    assert set(probed) == {s.name for s in catalog.enabled(stack.config)} - {"consul"}
    assert {"mongodb", "mariadb", "redis", "nextcloud-cron", "watchtower"} <= set(probed)
    assert [u.name for u in registry.unprobed(stack.config)] == ["consul"]
    deadline = time.monotonic() + 60
    while set(registry.health(consul, probed).values()) != {"passing"} and time.monotonic() < deadline:
        time.sleep(2)
    assert set(registry.health(consul, probed).values()) == {"passing"}, registry.health(consul, probed)
    assert consul.kv_get("aini/deploy/librechat")  # the deploy record, no secret in it
    stopped = ["librechat", "nextcloud-cron"]  # one probed over HTTP, one through the Docker API
    stack.docker_cmd("stop", *(f"aini-{name}" for name in stopped))
    try:
        deadline = time.monotonic() + 60
        while set(registry.health(consul, stopped).values()) != {"critical"} and time.monotonic() < deadline:
            time.sleep(2)
        assert registry.health(consul, stopped) == dict.fromkeys(stopped, "critical")
        assert set(registry.health(consul, set(probed) - set(stopped)).values()) == {"passing"}
        proc = _aini(stack, "status", "--json")
        out, err = _finish(proc)
        assert proc.returncode == 1, out + err
        rows = {r["service"]: r for r in json.loads(out)["services"]}
        assert sorted(s for s, r in rows.items() if not r["ok"]) == stopped
    finally:
        stack.docker_cmd("start", *(f"aini-{name}" for name in stopped))
        stack.wait_https(stack.host("librechat"), "/health", timeout=120)


def _connects(stack: Stack, container: str, host: str, port: int) -> bool:
    """A TCP connection from inside `container` (a double: it has python3)."""
    probe = f"import socket; socket.create_connection(({host!r}, {port}), 3)"
    return stack.docker_run("exec", container, "python3", "-c", probe).returncode == 0


def test_consul_reaches_every_group_but_the_groups_still_cannot_reach_each_other(stack: Stack):
    """Consul joins each internal network to probe it; that must not join the groups."""
    assert _connects(stack, "aini-consul", "aini-mariadb", 3306)
    assert _connects(stack, "aini-consul", "aini-mongodb", 27017)
    assert _connects(stack, "aini-nextcloud", "aini-mariadb", 3306)  # the control: its own group
    assert not _connects(stack, "aini-librechat", "aini-mariadb", 3306)
    assert not _connects(stack, "aini-nextcloud", "aini-mongodb", 27017)
    assert not _connects(stack, "aini-librechat", "aini-socket-proxy", 2375)  # the Docker API stays netdata's
    assert not _connects(stack, "aini-librechat", "aini-netdata", 19999)  # Netdata: Traefik alone
    assert not _connects(stack, "aini-n8n", "aini-netdata", 19999)
    for group in ("librechat", "nextcloud", "netdata"):
        internal = stack.docker_cmd("network", "inspect", f"aini-{group}", "--format", "{{.Internal}}").strip()
        assert internal == "true", group


def _docker_api(stack: Stack, python: list[str], requests: list[tuple[str, str]]) -> list[int]:
    """Status codes of `requests` (method, path) sent to the socket proxy by `python` (docker
    arguments that run python3 in some container)."""
    asked = [("aini-socket-proxy", 2375, method, path) for method, path in requests]
    return [int(code) for code in stack.docker_cmd(*python, "-c", _PYTHON_HTTP, json.dumps(asked)).split()]


def test_the_docker_api_proxy_answers_its_two_clients_with_a_read_only_slice(stack: Stack):
    """The container list and `top` (Consul's running check) pass; a container's inspect
    (its environment: every secret), its files, and every write are refused."""
    secret = "/containers/aini-vault/json"
    asked = [("GET", "/containers/json"), ("GET", "/v1.41/containers/json?all=1"), ("GET", "/containers/aini-watchtower/top"),
             ("GET", secret), ("GET", "/v1.41" + secret), ("GET", "/containers/aini-vault/archive?path=/vault"),
             ("GET", "/containers/aini-vault/export"), ("GET", "/containers/aini-vault/logs?stdout=1"),
             ("POST", "/containers/aini-vault/stop"), ("DELETE", "/containers/aini-vault"), ("POST", "/containers/create")]
    assert _docker_api(stack, ["exec", "aini-consul", "python3"], asked) == [200, 200, 200, 403, 403, 403, 403, 403, 405, 405, 405]
    # Any other container, even one on the proxy's network (as Traefik is), gets nothing.
    stranger = ["run", "--rm", "--network", "aini-netdata", "--entrypoint", "python3", stack_images.double_image("socket-proxy")]
    assert _docker_api(stack, stranger, [("GET", "/containers/json"), ("HEAD", "/_ping")]) == [403, 403]


# Send each (host, port, method, path) of argv[1] (JSON); print each status, or "refused".
_PYTHON_HTTP = """
import http.client, json, sys
for host, port, method, path in json.loads(sys.argv[1]):
    c = http.client.HTTPConnection(host, port, timeout=10)
    try:
        c.request(method, path)
        print(c.getresponse().status)
    except ConnectionRefusedError:
        print("refused")
"""
_NODE_GET = """
const http = require("http");
(async () => {
  for (const [host, port, path] of JSON.parse(process.argv[1])) {
    console.log(await new Promise((done) => http.get({host, port, path, timeout: 10000}, (res) => {
      res.resume(); done(res.statusCode);
    }).on("error", (e) => done(e.code === "ECONNREFUSED" ? "refused" : e.code))));
  }
})();
"""


def test_applications_get_nothing_from_the_control_planes_apis(stack: Stack):
    """LibreChat and n8n share the proxy network with Consul and Vault: without a token they
    are refused (Consul's ACLs deny by default; Vault wants a token)."""
    asked = [("aini-consul", 8500, f"/v1/kv/{registry.RECORDS}traefik"), ("aini-consul", 8500, "/v1/snapshot"),
             ("aini-vault", 8200, "/v1/sys/policies/acl"), ("aini-vault", 8200, "/v1/aini/data/librechat/CREDS_KEY")]
    for get, requests in ((["exec", "aini-librechat", "python3", "-c", _PYTHON_HTTP],  # the double has python3
                           [(host, port, "GET", path) for host, port, path in asked]),
                          (["exec", "aini-n8n", "node", "-e", _NODE_GET], asked)):  # the real n8n image: node
        answers = stack.docker_cmd(*get, json.dumps(requests)).split()
        assert len(answers) == len(asked) and set(answers) <= {"401", "403", "refused"}, (get[1], answers)


def test_plan_compares_with_consuls_record_of_the_deploy(stack: Stack):
    proc = _aini(stack, "plan", "--deployed", "--json")
    out, err = _finish(proc)
    assert proc.returncode == 0, out + err
    deployed = json.loads(out)["deployed"]
    assert deployed and set(deployed.values()) == {"unchanged"}, deployed
    lines = json.loads(out)["deploy_plan"]  # what `aini up` would do, read from the engine
    assert sorted(lines) == sorted(f"= {group:<14} skip unchanged" for group in deployed), lines
    # The same project with one setting changed: only n8n's group differs from the record.
    changed = json.loads(json.dumps(stack.data))
    changed["services"] = {"n8n": {"timezone": "Europe/Vienna"}}
    other = stack.project_dir / "changed.yml"
    other.write_text(yaml.safe_dump(changed, sort_keys=False))
    r = subprocess.run([sys.executable, "-m", "aini", "-c", str(other), "plan", "--deployed", "--json"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "AINI_DOCKER": stack.docker})
    assert r.returncode == 0, r.stderr
    assert {g: v for g, v in json.loads(r.stdout)["deployed"].items() if v != "unchanged"} == {"n8n": "changed"}
    lines = [line for line in json.loads(r.stdout)["deploy_plan"] if not line.endswith("skip unchanged")]
    assert lines[0] == "+ n8n            up   changed" and lines[1].startswith("images: ") and len(lines) == 2, lines


def test_secrets_set_redeploys_only_what_uses_the_key_and_never_shows_the_value(stack: Stack):
    value = "sk-e2e-" + "7c1d9e" * 6
    before = stack.containers()
    proc = _aini(stack, "secrets", "set", "librechat", "OPENAI_API_KEY", stdin=value + "\n")
    seen = []
    while proc.poll() is None:  # the process list while it runs: no argv holds the value
        seen.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)
        time.sleep(0.2)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    assert proc.returncode == 0, out + err
    assert seen and not any(value in listing for listing in seen)
    assert value not in out + err and "Redeployed: librechat." in out
    after = stack.containers()
    changed = sorted(n for n in after if after[n][0] != before.get(n, ("",))[0])
    assert changed == ["aini-librechat"]
    assert stack.docker_cmd("exec", "aini-librechat", "printenv", "OPENAI_API_KEY").strip() == value
    assert _vault(stack).kv_get("librechat/openai_api_key") == {"value": value}


def test_a_sealed_vault_keeps_services_running_and_is_reported_until_unsealed(stack: Stack):
    stack.docker_cmd("restart", "aini-vault")  # a restarted Vault comes back sealed
    client = VaultClient(f"http://{FIXED_IPS['vault']}:8200")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.health().state == "sealed":
                break
        except AiniError:
            pass
        time.sleep(1)
    assert client.health().state == "sealed"
    stack.wait_https(stack.host("librechat"), "/health")  # the applications do not notice
    proc = _aini(stack, "status", "--json")
    out, err = _finish(proc)
    assert proc.returncode == 1
    rows = {r["service"]: r for r in json.loads(out)["services"]}
    assert "aini vault unseal" in rows["vault"]["reason"]
    proc = _aini(stack, "vault", "unseal")
    out, err = _finish(proc)
    assert proc.returncode == 0 and "Vault unsealed." in out, out + err
    assert client.health().state == "active"
    # Consul's check of Vault turns passing at its next run (10 s interval): bounded wait.
    deadline = time.monotonic() + 45
    while True:
        proc = _aini(stack, "status", "--json")
        out, err = _finish(proc)
        if proc.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert proc.returncode == 0, out + err


def _mariadb(stack: Stack, query: str) -> str:
    return stack.docker_cmd("exec", "aini-mariadb", "sh", "-c",
                            f'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -N nextcloud -e "{query}"').strip()


def _cli(stack: Stack, *args: str) -> tuple[int, str, str]:
    proc = _aini(stack, *args)
    out, err = _finish(proc, timeout=900)
    return proc.returncode, out, err


def _mongo(stack: Stack, command: dict) -> dict:
    """A command to the MongoDB double over its own protocol, as its root user (test only)."""
    script = ("import json, os, sys; sys.path.insert(0, '/opt/aini-double'); import mongodb_double as m; "
              "c = m.Client('127.0.0.1', 27017); c.command({'authenticate': os.environ['MONGO_INITDB_ROOT_USERNAME'], "
              "'password': os.environ['MONGO_INITDB_ROOT_PASSWORD'], '$db': 'admin'}); "
              "print(json.dumps(c.command(json.loads(sys.argv[1]))))")
    return json.loads(stack.docker_cmd("exec", "aini-mongodb", "python3", "-c", script, json.dumps(command)))


def _in_maintenance(stack: Stack) -> bool:
    return '"maintenance":true' in stack.https(stack.host("nextcloud"), "/status.php").text


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: no handler runs, the children it started are orphaned, not stopped
    proc.wait(timeout=30)


def test_aini_up_killed_at_a_seeded_moment_of_an_update_ends_healthy_at_the_new_version_with_its_data(
        stack: Stack, figures, tmp_path_factory):
    """`kill -9` of `aini up` while it updates n8n (backed up first) and OnlyOffice, at a
    seeded random moment; the same `aini up` again ends with every container running and
    healthy at the new versions, and n8n's workflow still there."""
    rng = random.Random(int(os.environ.get("AINI_KILL_SEED", "20261128")))
    old = {name: _image_of(stack, f"aini-{name}") for name in ("n8n", "onlyoffice")}
    new = {name: image.rsplit(":", 1)[0] + ":9.9.8-kill" for name, image in old.items()}
    for name in old:
        stack.docker_cmd("tag", old[name], new[name])
    workflow = {"name": "aini-e2e-kill", "nodes": [], "connections": {}, "settings": {}, "active": False}
    r = stack.https(stack.host("n8n"), "/rest/workflows", method="POST", body=json.dumps(workflow).encode(),
                    headers={**BROWSER, "Cookie": _n8n_login(stack)})
    assert r.status == 200, r.text[:300]
    overrides = dict(stack.data["images"]["overrides"])
    stack.data["backup"] = {"repository": str(tmp_path_factory.mktemp("restic-up-kill") / "repository")}
    try:
        stack.data["images"]["overrides"] |= new
        moment = round(rng.uniform(2, 40), 1)
        proc = _aini(stack, "up")
        time.sleep(moment)
        killed = proc.poll() is None
        _kill(proc)
        figures({"update_kill_moment_seconds": moment, "update_killed_mid_run": int(killed)})
        code, out, err = _cli(stack, "up")
        assert code == 0, out + err
        assert "Traceback" not in err
        for name, (_, state) in stack.containers().items():
            health = stack.docker_cmd("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", name)
            assert state == "running" and health.strip() in ("", "healthy"), (name, state, health)
        assert {name: _image_of(stack, f"aini-{name}") for name in new} == new
        r = stack.https(stack.host("n8n"), "/rest/workflows", headers={**BROWSER, "Cookie": _n8n_login(stack)})
        assert "aini-e2e-kill" in {w["name"] for w in json.loads(r.body)["data"]}, r.text[:300]
        # back to the old versions without a repository: no backup first, and the update says so
        stack.data.pop("backup")
        stack.data["images"]["overrides"] = overrides
        out = io.StringIO()
        assert set(stack.up(console=Console(file=out, width=250)).touched) == {"n8n", "onlyoffice"}
        assert "! no backup before updating n8n: backup.repository is not set" in out.getvalue()
        assert {name: _image_of(stack, f"aini-{name}") for name in old} == old
    finally:
        stack.data.pop("backup", None)
        stack.data["images"]["overrides"] = overrides
        stack.up()
        for image in new.values():
            stack.docker_cmd("rmi", image, check=False)


def test_a_backup_killed_at_any_moment_is_tidied_by_the_next_one(stack: Stack, figures, tmp_path_factory):
    """`kill -9` of `aini backup` at a seeded random moment and in Nextcloud's maintenance
    window: the next `aini backup` succeeds without a manual unlock, and the next one or `aini
    up` takes Nextcloud out of maintenance mode, removes the orphaned restic containers and
    forgets the unfinished snapshots; `restic check` passes and no restore would take the
    killed run."""
    seed = int(os.environ.get("AINI_KILL_SEED", "20261127"))
    rng = random.Random(seed)
    repository = tmp_path_factory.mktemp("restic-kill") / "repository"
    stack.data["backup"] = {"repository": str(repository)}
    journal = stack.deploy_dir / "backup-run.json"
    args = ("backup", "--only", "nextcloud", "--only", "n8n")
    try:
        start = time.monotonic()
        code, out, err = _cli(stack, *args)
        full = time.monotonic() - start
        assert code == 0, out + err
        whole_run = out.strip().splitlines()[-1].split()[1].rstrip(":")

        moments, mid_run = [], 0  # AINI_KILL_ROUNDS > 1: more kills, each tidied by the next run
        for _ in range(int(os.environ.get("AINI_KILL_ROUNDS", "1"))):
            moments.append(round(rng.uniform(0.1, 1.1) * full, 1))
            proc = _aini(stack, *args)
            time.sleep(moments[-1])
            _kill(proc)
            mid_run += journal.exists()

        proc = _aini(stack, *args)  # tidies what the first kill left, then enters maintenance mode
        while not _in_maintenance(stack):  # bounded by the run itself: it ends, maintenance seen or not
            assert proc.poll() is None, "aini backup ended before Nextcloud was seen in maintenance mode"
            time.sleep(0.2)
        _kill(proc)
        assert journal.exists() and _in_maintenance(stack)  # the state the next run must repair
        killed_run = json.loads(journal.read_text())["run"]

        # A deploy finds the journal first and repairs what the run left (before its health gate).
        start = time.monotonic()
        code, out, err = _cli(stack, "up")
        tidy_seconds = time.monotonic() - start
        assert code == 0, out + err
        assert f"an earlier backup (run {killed_run}) was interrupted" in err
        assert not journal.exists() and not _in_maintenance(stack)
        assert stack.containers()["aini-n8n"][1] == "running"
        assert stack.docker_cmd("ps", "-q", "--filter", "label=aini.restic=e2e").strip() == ""
        code, out, err = _cli(stack, *args)
        assert code == 0, out + err
        last_run = out.strip().splitlines()[-1].split()[1].rstrip(":")

        code, out, err = _cli(stack, "backup", "check")
        assert code == 0, out + err
        code, out, err = _cli(stack, "backup", "list", "--json")
        listed = json.loads(out)
        # the killed runs' unfinished snapshots are forgotten; of today's whole runs the policy
        # (backup.retention: the newest per day) keeps the last one
        assert {s["run"] for s in listed} == {last_run} and all(s["complete"] for s in listed)
        assert killed_run != last_run != whole_run
        figures({"kill_seed": seed, "kill_moments_seconds": moments, "kill_run_seconds": round(full, 1),
                 "kills_mid_run": mid_run,
                 "up_after_kill_seconds": round(tidy_seconds, 1)})
    finally:
        del stack.data["backup"]
        if _in_maintenance(stack):
            stack.docker_cmd("exec", "-u", "www-data", "aini-nextcloud", "php", "occ", "maintenance:mode", "--off",
                             check=False)


class _ArgvWatch:
    """Every process's argv on this machine, sampled every 20 ms while it runs (the host's
    process list shows the containers' processes too): what `ps` would have shown anyone."""

    def __init__(self) -> None:
        import threading

        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                            self.seen.add(f.read().replace(b"\0", b" ").decode(errors="replace"))
                    except OSError:
                        pass
            self._stop.wait(0.02)

    def __enter__(self) -> _ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_backup_and_restore_bring_back_every_services_data_as_it_was(stack: Stack, figures, tmp_path_factory):
    """`aini backup`, `aini backup list` and `aini restore` through the CLI, with the real
    restic, MariaDB and n8n: a row, a document, a file in each volume, maintenance mode undone."""
    repository = tmp_path_factory.mktemp("restic") / "repository"
    stack.data["backup"] = {"repository": str(repository)}
    try:
        _mariadb(stack, "CREATE TABLE aini_e2e (v TEXT); INSERT INTO aini_e2e VALUES ('before')")
        stack.docker_cmd("exec", "aini-n8n", "sh", "-c", "echo before > /home/node/.n8n/aini-e2e-marker")
        stack.docker_cmd("exec", "aini-nextcloud", "sh", "-c", "echo before > /var/www/html/aini-e2e-marker")
        _mongo(stack, {"insert": "conversations", "documents": [{"title": "before"}], "$db": "LibreChat"})
        vault, consul = _vault(stack), _consul(stack)
        vault.kv_put("e2e/marker", {"value": "before"})
        consul.kv_put("aini/e2e-marker", "before")
        start = time.monotonic()
        with _ArgvWatch() as backup_argvs:
            code, out, backup_err = _cli(stack, "backup")
        backup_seconds = time.monotonic() - start
        err = backup_err
        assert code == 0, out + err
        assert "maintenance:mode --on" in err and "stopping aini-n8n" in err  # progress on stderr
        rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
        saved = {"traefik", "consul", "vault", "mongodb", "librechat", "n8n", "mariadb", "nextcloud"}
        assert saved <= set(rows) and "FAILED" not in out
        assert "redis           not backed up: a cache; not backed up" in out
        run = out.strip().splitlines()[-1].split()[1].rstrip(":")
        assert stack.store.get("restic_password") and stack.store.get("restic_password") not in out + err

        windows = {line.split(":")[0]: float(line.split(" for ")[1].rstrip("s"))
                   for line in out.splitlines() if "stopped or in maintenance mode for" in line}
        assert set(windows) == {"n8n", "nextcloud"}

        code, out, err = _cli(stack, "backup", "list", "--json")
        assert code == 0, err
        listed = json.loads(out)
        assert {(s["service"], s["run"]) for s in listed} == {(name, run) for name in saved}
        code, out, err = _cli(stack, "backup", "check", "--read-data", "100")
        assert code == 0 and "the repository is intact (100% of its data read back)" in out, out + err

        # The recovery kit: aini.yml and .aini/ rebuilt in an empty directory from the repository
        # and the break-glass passphrase alone, and the rebuilt project reads the repository.
        assert "the repository now also opens with the break-glass passphrase" in backup_err
        recovered = tmp_path_factory.mktemp("recovered")
        bare = {k: v for k, v in os.environ.items() if not k.startswith("AINI_")}
        recover = [sys.executable, "-m", "aini", "recover", "--repository", str(repository), "--into", str(recovered),
                   "--restic-image", pinned_ref(backup_catalog.RESTIC, stack.config.images)]  # no Docker Hub here
        r = subprocess.run(recover, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                           env={**bare, "AINI_DOCKER": stack.docker, "AINI_BREAKGLASS_PASSPHRASE": "not-the-passphrase"})
        assert r.returncode == 1 and "the break-glass passphrase opens no key" in r.stderr, r.stdout + r.stderr
        assert list(recovered.iterdir()) == []  # nothing written
        start = time.monotonic()
        r = subprocess.run(recover, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                           env={**bare, **PASSPHRASE_ENV, "AINI_DOCKER": stack.docker})
        figures({"recover_kit_seconds": round(time.monotonic() - start, 1)})
        assert r.returncode == 0 and "recovered e2e from its kit" in r.stdout, r.stdout + r.stderr
        for name in ("aini.yml", ".aini/secrets.json", ".aini/controlplane.json", ".aini/breakglass.enc"):
            assert (recovered / name).read_bytes() == (stack.project_dir / name).read_bytes(), name
        assert (recovered / ".aini" / "secrets.json").stat().st_mode & 0o777 == 0o600
        assert r.returncode == 0 and stack.store.get("restic_password") not in r.stdout + r.stderr
        r = subprocess.run([sys.executable, "-m", "aini", "-c", str(recovered / "aini.yml"), "backup", "list", "--json"],
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                           env={**bare, "AINI_DOCKER": stack.docker})
        assert r.returncode == 0 and json.loads(r.stdout) == listed, r.stderr

        # The drill: every service of the run restored into throwaway copies and checked, then removed.
        start = time.monotonic()
        code, out, err = _cli(stack, "backup", "drill")
        drill_seconds = time.monotonic() - start
        assert code == 0, out + err
        drilled = {line.split()[0]: line for line in out.splitlines()[:-1]}
        assert set(drilled) == saved and f"drill of run {run}: passed" in out
        assert "load    ok: " in drilled["mariadb"] and "tables in nextcloud" in drilled["mariadb"]
        assert "load    ok: the dump loaded" in drilled["mongodb"]
        assert "bytes read back whole" in drilled["vault"] and "bytes read back whole" in drilled["consul"]
        assert "restored and verified" in drilled["nextcloud"]
        leftovers = stack.docker_cmd("ps", "-aq", "--filter", "label=aini.drill=e2e") + stack.docker_cmd(
            "volume", "ls", "-q", "--filter", "label=aini.drill=e2e") + stack.docker_cmd(
            "network", "ls", "-q", "--filter", "label=aini.drill=e2e")
        assert leftovers.strip() == ""  # everything it made is gone
        figures({"drill_all_seconds": round(drill_seconds, 1)})
        assert stack.containers()["aini-n8n"][1] == "running"  # started again, and healthy: backup waited
        deadline = time.monotonic() + 60  # Consul's check of n8n turns passing on its next interval
        while (status := _cli(stack, "status", "--json"))[0] != 0 and time.monotonic() < deadline:
            time.sleep(3)
        code, out, err = status
        rows = {r["service"]: r for r in json.loads(out)["services"]}
        assert code == 0, [(r["service"], r["reason"]) for r in rows.values() if not r["ok"]]
        assert {name: rows[name]["backup"] for name in saved} == {
            name: "backed up 0 h ago; drill passed 0 h ago" for name in saved}
        assert rows["redis"]["backup"] is None
        # The drill fails, naming the service, on a run whose dump was damaged; status says so.
        _damaged_run(stack, repository, "20000101T000000Z", "mariadb", "nextcloud.sql", b"-- cut\nINSERT INTO")
        code, out, err = _cli(stack, "backup", "drill", "--only", "mariadb", "--snapshot", "20000101T000000Z")
        assert code == 1 and out.splitlines()[0].startswith("mariadb") and "FAILED: loading the dump" in out, out + err
        code, out, err = _cli(stack, "status", "--json")
        rows = {r["service"]: r for r in json.loads(out)["services"]}
        assert code == 1 and "the last restore drill failed: loading the dump" in rows["mariadb"]["reason"]
        code, out, err = _cli(stack, "backup", "drill", "--only", "mariadb")
        assert code == 0 and f"drill of run {run}: passed" in out, out + err

        # Changes after the backup: the restore undoes them (a new file is deleted, too).
        _mariadb(stack, "UPDATE aini_e2e SET v = 'after'")
        stack.docker_cmd("exec", "aini-n8n", "sh", "-c", "echo after > /home/node/.n8n/aini-e2e-marker")
        stack.docker_cmd("exec", "aini-nextcloud", "sh", "-c", "echo new > /var/www/html/aini-e2e-later")
        _mongo(stack, {"insert": "conversations", "documents": [{"title": "after"}], "$db": "LibreChat"})

        code, out, err = _cli(stack, "restore", "nextcloud", "n8n", "--confirm", "not-the-project")
        assert code == 2 and "nothing was restored" in err
        assert _mariadb(stack, "SELECT v FROM aini_e2e") == "after"

        start = time.monotonic()
        with _ArgvWatch() as restore_argvs:
            code, out, err = _cli(stack, "restore", "nextcloud", "n8n", "librechat", "--confirm", "e2e")
        restore_seconds = time.monotonic() - start
        argvs = backup_argvs.seen | restore_argvs.seen
        assert any("mariadb-dump" in a for a in backup_argvs.seen) and any("restic" in a for a in argvs)  # it saw them
        state = State.load(stack.project_dir)
        secrets = [v for v in (*stack.store.values(), state.vault_snapshot_token, state.consul_snapshot_token,
                               breakglass.load(stack.project_dir / ".aini" / "breakglass.enc", PASSPHRASE).vault_root_token)
                   if v and len(v) >= 8]
        assert state.vault_snapshot_token in secrets and state.consul_snapshot_token in secrets
        assert stack.store.get("restic_password") in secrets and stack.store.get("mariadb_root_password") in secrets
        assert [a for a in argvs if any(v in a for v in secrets)] == []  # no secret in any argv
        assert code == 0, out + err
        assert f"to run {run}" in out
        safety = out.split("is run ")[1].split()[0]
        assert _mariadb(stack, "SELECT v FROM aini_e2e") == "before"
        assert stack.docker_cmd("exec", "aini-n8n", "cat", "/home/node/.n8n/aini-e2e-marker").strip() == "before"
        assert stack.docker_cmd("exec", "aini-nextcloud", "cat", "/var/www/html/aini-e2e-marker").strip() == "before"
        assert stack.docker_run("exec", "aini-nextcloud", "test", "-e", "/var/www/html/aini-e2e-later").returncode == 1
        found = _mongo(stack, {"find": "conversations", "$db": "LibreChat"})["documents"]
        assert found == [{"title": "before"}]
        # The copy was taken in maintenance mode; the restored Nextcloud is out of it and serves.
        r = stack.wait_https(stack.host("nextcloud"), "/status.php", ok=lambda r: '"maintenance":false' in r.text)
        assert '"installed":true' in r.text
        stack.wait_https(stack.host("n8n"), "/healthz")
        stack.wait_https(stack.host("librechat"), "/health")

        # The safety backup holds what the restore overwrote; only MariaDB's group was restarted.
        started = _started(stack)
        code, out, err = _cli(stack, "restore", "mariadb", "--snapshot", safety, "--confirm", "e2e")
        assert code == 0, out + err
        assert _mariadb(stack, "SELECT v FROM aini_e2e") == "after"
        restarted = {name for name, at in _started(stack).items() if started.get(name) != at}
        assert restarted and restarted <= {"aini-nextcloud", "aini-nextcloud-cron", "aini-redis"}, restarted

        # The control plane: Vault's raft snapshot (restored with the root token from the
        # break-glass file) and Consul's (with the snapshot token), both back to the run.
        vault.kv_put("e2e/marker", {"value": "after"})
        consul.kv_put("aini/e2e-marker", "after")
        start = time.monotonic()
        with _ArgvWatch() as control_argvs:
            code, out, err = _cli(stack, "restore", "vault", "consul", "--snapshot", run, "--confirm", "e2e")
        control_seconds = time.monotonic() - start
        assert code == 0, out + err
        assert [a for a in control_argvs.seen if any(v in a for v in secrets)] == []
        assert any("raft snapshot restore" in a for a in control_argvs.seen)  # it saw the restore run
        assert _vault(stack).kv_get("e2e/marker") == {"value": "before"}
        assert consul.kv_get("aini/e2e-marker") == b"before"
        health = VaultClient(f"http://{FIXED_IPS['vault']}:8200").health()
        assert (health.sealed, health.state) == (False, "active")
        figures({"restore_vault_consul_seconds": round(control_seconds, 1)})

        # A new machine, recovered from the repository and the passphrase alone: the server
        # e2e's disaster test (a fresh server and operator directory, S3).
        figures({"backup_all_seconds": round(backup_seconds, 1),
                 "backup_windows_seconds": windows,
                 "restore_nextcloud_n8n_librechat_seconds": round(restore_seconds, 1)})
    finally:
        del stack.data["backup"]
        _mariadb(stack, "DROP TABLE IF EXISTS aini_e2e")
        stack.docker_cmd("exec", "aini-n8n", "rm", "-f", "/home/node/.n8n/aini-e2e-marker", check=False)
        stack.docker_cmd("exec", "aini-nextcloud", "rm", "-f", "/var/www/html/aini-e2e-marker", check=False)


# `aini status` against this stack: the real CLI process, the real Docker engine, real TLS
# handshakes with Traefik and the certificates of the project's local CA. The second test
# leaves every service healthy again.

_STOPPED = "meilisearch"  # LibreChat's search: no other container's health check depends on it
_HEALTHY_AGAIN = 120  # seconds, bounded


def _status(stack: Stack, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """`aini -c <project>/aini.yml status ...` as a user runs it; returns the process and its wall time."""
    config_path = stack.project_dir / "aini.yml"
    config_path.write_text(yaml.safe_dump(stack.data, sort_keys=False))
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "aini", "-c", str(config_path), "status", *args],
                            check=False, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "AINI_DOCKER": stack.docker, "COLUMNS": "250"})
    assert "Traceback" not in result.stderr, result.stderr
    return result, time.monotonic() - start


def _rows_of(result: subprocess.CompletedProcess) -> dict[str, dict]:
    data = json.loads(result.stdout)
    return {row["service"]: row for row in data["services"]}


def test_status_of_the_healthy_stack(stack: Stack, figures):
    config = stack.config
    result, seconds = _status(stack, "--json")
    figures({"status_seconds": round(seconds, 2)})
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["project"] == config.project
    rows = _rows_of(result)
    enabled = catalog.enabled(config)
    assert list(rows) == [s.name for s in enabled]  # every enabled service, in deploy order, nothing else
    for spec in enabled:
        row = rows[spec.name]
        assert row["ok"] and row["state"] == "running", row
        assert row["health"] == ("healthy" if spec.health.test else row["health"]), row
        if spec.route:
            assert row["url"] == f"https://{stack.host(spec.name)}:{stack.https_port}/"
            assert row["cert_issuer"] == f"AINI local CA for {config.domain}", row
            assert row["cert_days_left"] > 0, row
        else:
            assert row["url"] is None and row["cert_issuer"] is None

    table, _ = _status(stack)
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"All {len(enabled)} services healthy" in table.stdout


def test_a_stopped_service_fails_status_naming_it_then_recovers(stack: Stack):
    container = catalog.by_name(_STOPPED).container
    assert _STOPPED in {s.name for s in catalog.enabled(stack.config)}
    stack.docker_cmd("stop", "--time", "10", container, timeout=60)
    try:
        result, _ = _status(stack, "--json")
        assert result.returncode == 1, result.stdout + result.stderr
        rows = _rows_of(result)
        assert {name for name, row in rows.items() if not row["ok"]} == {_STOPPED}
        assert rows[_STOPPED]["state"] == "exited" and rows[_STOPPED]["reason"].startswith("exited")
        table, _ = _status(stack)
        assert table.returncode == 1 and f"not healthy: {_STOPPED}" in table.stdout
    finally:
        stack.docker_cmd("start", container, timeout=60)
        deadline = time.monotonic() + _HEALTHY_AGAIN
        health = ""
        while time.monotonic() < deadline:
            health = stack.docker_cmd("inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                                      container, check=False).strip()
            if health == "healthy":
                break
            time.sleep(1)
        assert health == "healthy", f"{container} not healthy again within {_HEALTHY_AGAIN}s ({health})"
    result, _ = _status(stack, "--json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_disabled_service_has_no_route(stack: Stack):
    before = stack.containers()
    data = json.loads(json.dumps(stack.data))
    data["services"] = {"onlyoffice": {"enabled": False}}
    result = stack.up(data)
    actions = {g.group: g.action for g in result.groups}
    assert actions["onlyoffice"] == "down"
    assert actions["nextcloud"] == "up"  # its OnlyOffice settings are gone
    after = stack.containers()
    assert "aini-onlyoffice" not in after
    assert after["aini-traefik"] == before["aini-traefik"]  # routes reload live, no restart
    host = f"office.{stack.config.domain}"
    # The certificate no longer names it (issued again for the routes that remain): no TLS for it.
    assert stack.tls_refused(host)
    r = stack.wait_https(stack.host("librechat"), "/health", ok=lambda r: host not in r.peer_names)
    assert stack.host("librechat") in r.peer_names
    volumes = stack.docker_cmd("volume", "ls", "--format", "{{.Name}}").split()
    assert "aini-onlyoffice-data" in volumes  # data outlives a disabled service
