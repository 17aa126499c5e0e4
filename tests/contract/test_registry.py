"""The deploy's Consul step (aini.controlplane.registry): the pure builders as data, then
`sync`, `health` and `deployed_hashes` against the in-process Consul TEST DOUBLE with ACLs
on, using the deploy token. Tiny HTTP servers on 127.0.0.1 stand in for the containers;
the double really runs the HTTP checks against them."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aini import catalog
from aini.config import validate_data
from aini.controlplane import Request, registry
from aini.controlplane.consul import ConsulClient, ConsulError
from aini.errors import AiniError
from aini.render import bundle
from aini.store import SecretStore
from tests.harness.doubles import import_double
from tests.harness.endpoints import HttpEndpoint

from .helpers import wait_for

consul_api = import_double("consul_api")

DEPLOYED_AT = "2026-11-25T12:00:00Z"
API_KEY = "sk-registry-test-VALUE-0a1b2c3d4e5f"
PROBED = ["traefik", "vault", "mongodb", "meilisearch", "librechat", "n8n", "mariadb", "redis", "nextcloud",
          "nextcloud-cron", "onlyoffice", "socket-proxy", "netdata", "watchtower"]
NO_PORT = ("nextcloud-cron", "watchtower")  # asked of the Docker API (socket-proxy) whether they run
UNPROBED = {"consul": registry.SELF}


def config_for(**services):
    return validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"},
                          "services": services}, "t")


def render(config, store: SecretStore) -> dict:
    store.ensure(catalog.secrets_for(catalog.enabled(config)))
    return json.loads(bundle.render(config, store)[bundle.MANIFEST].content)


@pytest.fixture
def store(tmp_path: Path) -> SecretStore:
    store = SecretStore(tmp_path / ".aini")
    store.set_user("openai_api_key", API_KEY)  # a user-provided key too, not only generated ones
    return store



# ------------------------------------------------------------------------ pure builders


def test_registrations_of_the_default_config(store):
    config = config_for()
    manifest = render(config, store)
    regs = registry.registrations(config, manifest)
    assert [r.name for r in regs] == PROBED
    by = {r.name: r for r in regs}
    chat = by["librechat"].definition()
    assert chat["Address"] == "aini-librechat" and chat["Port"] == 3080
    assert chat["Check"]["HTTP"] == "http://aini-librechat:3080/health"
    # internal ones: Consul joins their networks; TCP where the catalog has no HTTP path
    assert by["mariadb"].definition()["Check"]["TCP"] == "aini-mariadb:3306"
    assert by["meilisearch"].definition()["Check"]["HTTP"] == "http://aini-meilisearch:7700/health"
    cron = by["nextcloud-cron"].definition()
    assert cron["Address"] == "aini-nextcloud-cron" and "Port" not in cron
    assert cron["Check"]["HTTP"] == "http://aini-socket-proxy:2375/containers/aini-nextcloud-cron/top"
    assert chat["Tags"] == ["aini", "librechat"]
    group = manifest["groups"]["librechat"]
    assert {k: v for k, v in chat["Meta"].items() if k != registry.FINGERPRINT} == {
        "group": "librechat", "image": group["images"]["librechat"], "bundle_hash": group["hash"],
        "aini_version": manifest["aini_version"]}
    # Traefik: the service port is 443, the probe its ping entrypoint
    traefik = by["traefik"].definition()
    assert traefik["Port"] == 443 and traefik["Check"]["HTTP"] == "http://aini-traefik:8080/ping"
    assert {(u.name, u.reason) for u in registry.unprobed(config)} == set(UNPROBED.items())
    # the same inputs, the same definitions (and fingerprints); the address is overridable
    assert [r.definition() for r in registry.registrations(config, manifest)] == [r.definition() for r in regs]
    moved = {r.name: r.definition() for r in registry.registrations(
        config, manifest, lambda host, port: ("127.0.0.1", port + 10000))}
    assert moved["librechat"]["Check"]["HTTP"] == "http://127.0.0.1:13080/health"
    assert moved["librechat"]["Meta"][registry.FINGERPRINT] != chat["Meta"][registry.FINGERPRINT]
    assert moved["watchtower"]["Check"]["HTTP"] == "http://127.0.0.1:12375/containers/aini-watchtower/top"


def test_disabled_services_are_neither_registered_nor_unprobed(store):
    config = config_for(onlyoffice={"enabled": False}, netdata={"enabled": False})
    names = [r.name for r in registry.registrations(config, render(config, store))]
    # without netdata's socket-proxy nothing can tell whether a portless container runs
    assert names == [n for n in PROBED if n not in ("onlyoffice", "netdata", "socket-proxy", *NO_PORT)]
    assert {(u.name, u.reason) for u in registry.unprobed(config)} == {
        ("consul", registry.SELF), *((n, registry.NO_PORT) for n in NO_PORT)}


def test_a_manifest_from_another_config_is_refused(store):
    manifest = render(config_for(onlyoffice={"enabled": False}), store)
    with pytest.raises(AiniError, match="no service onlyoffice"):
        registry.registrations(config_for(), manifest)


def test_records_hold_only_the_deployed_configuration(store):
    config = config_for()
    manifest = render(config, store)
    entries = registry.records(manifest, DEPLOYED_AT)
    services = [s for g in manifest["order"] for s in manifest["groups"][g]["services"]]
    assert sorted(entries) == sorted([f"aini/deploy/{s}" for s in services] + [registry.MANIFEST_KEY])
    assert {"mongodb", "mariadb", "nextcloud-cron"} <= set(services)  # every service has a record
    for key, value in entries.items():
        data = json.loads(value)
        if key == registry.MANIFEST_KEY:
            assert data == {"order": manifest["order"], "aini_version": manifest["aini_version"],
                            "deployed_at": DEPLOYED_AT,
                            "groups": {g: manifest["groups"][g]["hash"] for g in manifest["order"]}}
        else:
            assert set(data) == {"image", "bundle_hash", "deployed_at", "aini_version"}
    assert_no_secret(entries.values(), store)
    with pytest.raises(AssertionError):  # the check itself can fail
        assert_no_secret([b"x" + API_KEY.encode()], store)


def assert_no_secret(values, store: SecretStore) -> None:
    secrets = [s for s in store.values() if len(s) >= 8]
    assert API_KEY in secrets and len(secrets) > 5
    for value in values:
        text = value.decode() if isinstance(value, bytes) else json.dumps(value)
        assert not [s for s in secrets if s in text]


# ------------------------------------------------------------------ against the double


def docker_api(running: set[str]) -> HttpEndpoint:
    """socket-proxy: `GET /containers/<name>/top` is 200 while `name` runs, else 409 (as
    the Docker Engine API answers for a stopped container)."""
    def status(path: str) -> int:
        parts = path.strip("/").split("/")
        top = len(parts) == 3 and parts[0] == "containers" and parts[2] == "top"
        return 200 if parts[0] == "_ping" or (top and parts[1] in running) else 409

    return HttpEndpoint(status)


class World:
    def __init__(self, tmp_path: Path):
        self.consul = consul_api.serve(tmp_path / "consul")
        self.running = {f"aini-{name}" for name in NO_PORT}
        self.containers = {f"aini-{name}": HttpEndpoint() for name in PROBED if name not in NO_PORT}
        self.containers["aini-socket-proxy"] = docker_api(self.running)
        anonymous = ConsulClient(self.consul.url, timeout=10)
        boot = anonymous.acl_bootstrap()
        assert boot is not None
        self.admin = anonymous.with_token(boot.secret_id)
        self.deploy = anonymous.with_token(self.admin.ensure_deploy_token().secret_id)

    def resolve(self, host: str, port: int) -> tuple[str, int]:
        return "127.0.0.1", self.containers[host].port

    def sync(self, config, manifest, deployed_at: str = DEPLOYED_AT) -> registry.SyncResult:
        return registry.sync(self.deploy, config, manifest, deployed_at, self.resolve)

    def stop(self) -> None:
        for container in self.containers.values():
            try:
                container.stop()
            except OSError:
                pass
        self.consul.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.stop()


def all_passing(world: World, names) -> bool:
    return set(registry.health(world.deploy, names).values()) == {"passing"}


def test_sync_registers_every_probed_service_passing_and_a_stop_turns_critical(world, store):
    config = config_for()
    manifest = render(config, store)
    assert registry.deployed_hashes(world.deploy) is None  # nothing deployed yet
    result = world.sync(config, manifest)
    assert result.registered == tuple(PROBED) and result.deregistered == ()
    assert result.kv_written == len(registry.records(manifest, DEPLOYED_AT)) and result.kv_deleted == 0
    assert {u.name: u.reason for u in result.unprobed} == UNPROBED
    wait_for(lambda: all_passing(world, PROBED), 15)
    assert registry.deployed_hashes(world.deploy) == {g: manifest["groups"][g]["hash"] for g in manifest["order"]}

    world.containers["aini-n8n"].stop()  # the container stops
    world.running.discard("aini-nextcloud-cron")  # and one with no port
    wait_for(lambda: registry.health(world.deploy, ["n8n", "nextcloud-cron"]) == {
        "n8n": "critical", "nextcloud-cron": "critical"}, 25)  # interval 10 s
    assert all_passing(world, [n for n in PROBED if n not in ("n8n", "nextcloud-cron")])


def test_a_second_sync_of_the_same_deploy_changes_nothing(world, store):
    config = config_for()
    manifest = render(config, store)
    world.sync(config, manifest)
    wait_for(lambda: all_passing(world, PROBED), 15)
    kv_before = world.admin.kv_tree("aini/")

    again = world.sync(config, manifest, deployed_at="2026-11-26T08:00:00Z")  # a later, no-op `aini up`
    assert (again.registered, again.deregistered, again.kv_written, again.kv_deleted) == ((), (), 0, 0)
    assert world.admin.kv_tree("aini/") == kv_before  # the deploy time stays the time of the change
    assert all_passing(world, PROBED)  # not re-registered, so no check was reset to critical


def test_a_services_record_keeps_its_former_deploys_newest_first(world, store):
    """An update, another, then a rollback to the first image: each change pushes the record
    it replaced into `history` (image, bundle hash, time), at most registry.HISTORY of them;
    a deploy that changes nothing adds none."""
    def images(version: str):
        config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"},
                                "images": {"overrides": {"onlyoffice": f"registry.example/onlyoffice:{version}"}}}, "t")
        return config, render(config, store)
    times = ["2026-11-26T08:00:00Z", "2026-11-27T08:00:00Z", "2026-11-28T08:00:00Z", "2026-11-29T08:00:00Z"]
    for version, when in zip(["9.4.0", "9.5.0", "9.4.0", "9.4.0"], times):
        world.sync(*images(version), deployed_at=when)
    record = json.loads(world.deploy.kv_get("aini/deploy/onlyoffice"))
    assert record["image"] == "registry.example/onlyoffice:9.4.0" and record["deployed_at"] == times[2]
    assert [(h["image"].rsplit(":", 1)[1], h["deployed_at"]) for h in record["history"]] == [
        ("9.5.0", times[1]), ("9.4.0", times[0])]
    hashes = {v: images(v)[1]["groups"]["onlyoffice"]["hash"] for v in ("9.4.0", "9.5.0")}
    assert [h["bundle_hash"] for h in record["history"]] == [hashes["9.5.0"], hashes["9.4.0"]]
    for n in range(registry.HISTORY + 2):
        world.sync(*images(f"9.{n + 6}.0"), deployed_at=f"2026-12-{n + 1:02d}T08:00:00Z")
    assert len(json.loads(world.deploy.kv_get("aini/deploy/onlyoffice"))["history"]) == registry.HISTORY
    assert "history" not in json.loads(world.deploy.kv_get("aini/deploy/n8n"))  # never changed


def test_disabling_a_service_deregisters_it_and_drops_its_record(world, store):
    before = config_for()
    world.sync(before, render(before, store))
    after = config_for(onlyoffice={"enabled": False})
    manifest = render(after, store)
    result = world.sync(after, manifest, deployed_at="2026-11-26T08:00:00Z")
    assert result.deregistered == ("onlyoffice",) and result.kv_deleted == 1
    assert "onlyoffice" not in result.registered
    assert registry.health(world.deploy, ["onlyoffice"]) == {"onlyoffice": "critical"}  # not registered
    assert world.deploy.kv_get("aini/deploy/onlyoffice") is None
    assert "onlyoffice" not in registry.deployed_hashes(world.deploy)
    services = world.admin._call(registry.agent_services_request()).json()
    assert sorted(services) == sorted(n for n in PROBED if n != "onlyoffice")


def test_a_service_registered_outside_aini_is_left_alone(world, store):
    world.admin.register_service("backup-agent", "127.0.0.1", None, None, tags=["ops"])
    config = config_for()
    result = world.sync(config, render(config, store))
    assert "backup-agent" not in result.deregistered
    assert "backup-agent" in world.admin._call(registry.agent_services_request()).json()


def test_nothing_in_consul_holds_a_secret(world, store):
    config = config_for()
    manifest = render(config, store)
    world.sync(config, manifest)
    # the management token: every key there is, decoded, and the whole state (services, meta, checks)
    every = world.admin._call(Request("GET", "/v1/kv/", query=(("recurse", "true"),))).json()
    kv = {e["Key"]: base64.b64decode(e["Value"] or "") for e in every}
    assert set(kv) == set(registry.records(manifest, DEPLOYED_AT))
    assert_no_secret([*kv.values(), gzip.decompress(world.admin.snapshot())], store)


def test_the_summary_written_by_someone_else_is_an_error_not_a_guess(world):
    world.deploy.kv_put(registry.MANIFEST_KEY, b"not json")
    with pytest.raises(ConsulError, match="not an AINI deploy summary"):
        registry.deployed_hashes(world.deploy)
