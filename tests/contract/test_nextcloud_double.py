"""The Nextcloud TEST DOUBLE (tests/harness/images/doubles/nextcloud_double.py), run as its
image with real Docker volumes and bind mounts, against the upstream entrypoint's rules
(sources in the module's docstring): a file mounted into /var/www/html/config on a fresh
volume leaves that directory to root and the install never happens; the layout AINI
renders (a mount under /usr/src/nextcloud/config) installs; an incomplete environment
installs nothing; the cron container's OnlyOffice check reaches the Document Server and is
refused a private storage address unless allowed.

Docker must be there: without it these tests fail, they never skip."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from aini.catalog.nextcloud import IMAGE_CONFIG_DIR, NEXTCLOUD, ONLYOFFICE_CONFIG
from tests.harness import stack_images
from tests.contract.helpers import docker

GOLDEN_CONFIG = Path(__file__).parents[1] / "unit" / "golden" / "default" / "nextcloud" / ONLYOFFICE_CONFIG
# MariaDB's and Redis's ports, so that the double's dependency wait is real TCP.
LISTENER = ("import socket, threading\n"
            "def serve(port):\n"
            "    s = socket.create_server(('0.0.0.0', port))\n"
            "    while True:\n"
            "        s.accept()[0].close()\n"
            "threading.Thread(target=serve, args=(6379,), daemon=True).start()\n"
            "serve(3306)\n")


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    return {"nextcloud": stack_images.double_image("nextcloud"), "onlyoffice": stack_images.double_image("onlyoffice")}


class World:
    """One network with a database/Redis stand-in, and whatever the test starts on it;
    everything is named with a unique prefix and removed at the end."""

    def __init__(self, images: dict[str, str], tmp: Path):
        self.images, self.tmp = images, tmp
        self.prefix = f"aini-nct-{uuid.uuid4().hex[:8]}"
        self.containers: list[str] = []
        self.volumes: list[str] = []
        docker("network", "create", self.prefix)
        self.db = self.run("db", images["nextcloud"], entrypoint="python3", args=("-c", LISTENER))

    def name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def volume(self) -> str:
        name = f"{self.prefix}-html-{len(self.volumes)}"
        docker("volume", "create", name)
        self.volumes.append(name)
        return name

    def env_file(self, role: str, env: dict[str, str]) -> Path:
        path = self.tmp / f"{role}.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        path.chmod(0o600)
        return path

    def run(self, role: str, image: str, env: dict[str, str] | None = None, mounts: tuple[str, ...] = (),
            entrypoint: str | None = None, args: tuple[str, ...] = ()) -> str:
        name = self.name(role)
        argv = ["run", "-d", "--name", name, "--network", self.prefix]
        if env is not None:
            argv += ["--env-file", str(self.env_file(role, env))]  # secrets never in argv
        for mount in mounts:
            argv += ["-v", mount]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        docker(*argv, image, *args)
        self.containers.append(name)
        return name

    def remove(self, name: str) -> None:
        docker("rm", "-f", name, check=False)
        self.containers.remove(name)

    def close(self) -> None:
        for name in reversed(self.containers):
            docker("rm", "-f", name, check=False)
        for volume in self.volumes:
            docker("volume", "rm", "-f", volume, check=False)
        docker("network", "rm", self.prefix, check=False)


@pytest.fixture
def world(images, tmp_path: Path):
    w = World(images, tmp_path)
    try:
        yield w
    finally:
        w.close()


def wait_log(container: str, text: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        logs = docker("logs", container, check=False)
        out = logs.stdout + logs.stderr
        if text in out:
            return out
        state = docker("inspect", "-f", "{{.State.Status}}", container, check=False).stdout.strip()
        if state not in ("running", "created") or time.monotonic() > deadline:
            raise AssertionError(f"{container} ({state}) never logged {text!r}:\n{out[-3000:]}")
        time.sleep(0.5)


def wait_log_count(container: str, text: str, count: int, timeout: float = 90) -> str:
    """The container's whole log (every start) once `text` appeared `count` times."""
    deadline = time.monotonic() + timeout
    while True:
        logs = docker("logs", container, check=False)
        out = logs.stdout + logs.stderr
        if out.count(text) >= count:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{container} logged {text!r} {out.count(text)} times, not {count}:\n{out[-3000:]}")
        time.sleep(0.5)


def status(container: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        r = docker("exec", container, "curl", "-fsS", "http://127.0.0.1/status.php", check=False)
        if r.returncode == 0:
            return json.loads(r.stdout)
        if time.monotonic() > deadline:
            raise AssertionError(f"status.php never answered: {r.stderr}")
        time.sleep(0.5)


def healthy(container: str) -> bool:
    """The catalog's own health check command, run in the container as Docker would."""
    kind, command = NEXTCLOUD.health.test
    assert kind == "CMD-SHELL"
    return docker("exec", container, "sh", "-c", command, check=False).returncode == 0


def nextcloud_env(world: World, **overrides: str | None) -> dict[str, str]:
    env = {
        "MYSQL_HOST": world.db, "MYSQL_DATABASE": "nextcloud", "MYSQL_USER": "nextcloud",
        "MYSQL_PASSWORD": secrets.token_hex(12), "NEXTCLOUD_ADMIN_USER": "admin",
        "NEXTCLOUD_ADMIN_PASSWORD": secrets.token_hex(12), "NEXTCLOUD_TRUSTED_DOMAINS": "cloud.example.com",
        "REDIS_HOST": world.db, "AINI_ONLYOFFICE_URL": "https://office.example.com/",
        "AINI_ONLYOFFICE_INTERNAL_URL": f"http://{world.name('oo')}/",
        "AINI_NEXTCLOUD_INTERNAL_URL": f"http://{world.name('nc')}/",
        "AINI_ONLYOFFICE_JWT_SECRET": secrets.token_hex(16),
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    return env


def occ(container: str, *args: str, user: str = "www-data") -> subprocess.CompletedProcess:
    return docker("exec", "--user", user, "--workdir", "/var/www/html", container, "php", "occ", *args, check=False)


def test_a_file_mounted_into_the_config_directory_of_a_fresh_volume_blocks_the_install(world):
    # What AINI rendered before: the runtime creates /var/www/html/config (root) for the mount.
    volume = world.volume()
    nc = world.run("nc", world.images["nextcloud"], nextcloud_env(world), mounts=(
        f"{volume}:/var/www/html", f"{GOLDEN_CONFIG}:/var/www/html/config/{ONLYOFFICE_CONFIG}:ro"))
    logs = wait_log(nc, "Initializing finished")
    assert "Starting nextcloud installation" in logs  # the variables were complete
    assert 'Cannot write into "config" directory!' in logs  # occ refused as www-data...
    assert "Installing of nextcloud failed!" not in logs  # ...yet exited 0, as upstream's does
    assert docker("exec", nc, "stat", "-c", "%U:%G", "/var/www/html/config").stdout.strip() == "root:root"
    assert docker("exec", nc, "ls", "/var/www/html/config").stdout.split() == [ONLYOFFICE_CONFIG]  # nothing copied
    assert status(nc)["installed"] is False
    assert not healthy(nc)
    listing = occ(nc, "app:list", "--output=json")
    assert listing.returncode == 0 and 'Cannot write into "config" directory!' in listing.stdout
    # A restart does not retry: version.php says the image's version is in place.
    docker("restart", nc)
    logs = wait_log_count(nc, "listening on :80", 2)  # the second start is through its entrypoint
    assert logs.count("New nextcloud instance") == 1
    assert status(nc)["installed"] is False


def test_the_rendered_layout_installs_with_the_images_config_files_and_ainis(world):
    volume = world.volume()
    env = nextcloud_env(world)
    nc = world.run("nc", world.images["nextcloud"], env, mounts=(
        f"{volume}:/var/www/html", f"{GOLDEN_CONFIG}:{IMAGE_CONFIG_DIR}/{ONLYOFFICE_CONFIG}:ro"))
    logs = wait_log(nc, "Initializing finished")
    assert 'Cannot write into "config" directory!' not in logs
    assert status(nc)["installed"] is True
    assert healthy(nc)
    listed = docker("exec", nc, "ls", "-l", "/var/www/html/config").stdout
    for name in ("config.php", "redis.config.php", "reverse-proxy.config.php", "s3.config.php", ONLYOFFICE_CONFIG):
        line = next((row for row in listed.splitlines() if row.endswith(" " + name)), "")
        assert " www-data www-data " in line, f"{name}: {line or 'missing'}"
    # Nextcloud writes the merged configuration, getenv() values included (README: Secrets).
    config_php = docker("exec", nc, "cat", "/var/www/html/config/config.php").stdout
    merged = env["AINI_ONLYOFFICE_JWT_SECRET"] in config_php
    assert merged, "config.php lacks the merged OnlyOffice settings"
    assert json.loads(occ(nc, "app:list", "--output=json").stdout) == {"enabled": {}, "disabled": {}}
    as_root = occ(nc, "app:list", "--output=json", user="root")
    assert as_root.returncode == 1 and "has to be executed with the user that owns" in as_root.stderr


def _exit_code(container: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while docker("inspect", "-f", "{{.State.Status}}", container).stdout.strip() != "exited":
        if time.monotonic() > deadline:
            raise AssertionError(f"{container} still runs")
        time.sleep(0.5)
    return int(docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip())


@pytest.mark.parametrize("data, refusal", [
    ((32, 0, 5, 1), "It is only possible to upgrade one major version at a time"),
    ((35, 0, 1, 2), "is higher than the docker image version"),
])
def test_data_two_majors_older_or_newer_than_the_image_stops_the_entrypoint(world, data, refusal):
    """What AINI's version rule for Nextcloud stands on: upstream's entrypoint refuses both."""
    volume = world.volume()
    version_php = "<?php\n$OC_Version = array(%s);\n$OC_VersionString = '%s';\n" % (
        ",".join(map(str, data)), ".".join(map(str, data[:3])))
    docker("run", "--rm", "-v", f"{volume}:/var/www/html", "--entrypoint", "python3", world.images["nextcloud"],
           "-c", f"open('/var/www/html/version.php', 'w').write({version_php!r})")
    nc = world.run("nc", world.images["nextcloud"], nextcloud_env(world), mounts=(f"{volume}:/var/www/html",))
    assert _exit_code(nc) == 1
    logs = docker("logs", nc).stdout + docker("logs", nc).stderr
    assert refusal in logs
    assert "Upgrading" not in logs and "Initializing finished" not in logs


@pytest.mark.parametrize("missing", ["MYSQL_DATABASE", "MYSQL_HOST", "NEXTCLOUD_ADMIN_PASSWORD"])
def test_without_the_complete_documented_variables_nothing_is_installed(world, missing):
    volume = world.volume()
    nc = world.run("nc", world.images["nextcloud"], nextcloud_env(world, **{missing: None}), mounts=(
        f"{volume}:/var/www/html", f"{GOLDEN_CONFIG}:{IMAGE_CONFIG_DIR}/{ONLYOFFICE_CONFIG}:ro"))
    logs = wait_log(nc, "Initializing finished")
    assert "Next step: Access your instance to finish the web-based installation!" in logs
    assert "Starting nextcloud installation" not in logs
    assert status(nc)["installed"] is False
    assert not healthy(nc)
    assert occ(nc, "app:list", "--output=json").returncode == 1  # only a limited number of commands


def _settings_error(container: str) -> str | None:
    state = docker("exec", container, "cat", "/var/www/html/.aini-double-apps.json").stdout
    return json.loads(state).get("settings_error", {}).get("onlyoffice")


def _checks(container: str) -> list[str]:
    return [line for line in docker("logs", container).stdout.splitlines() if line.startswith("onlyoffice: ")]


def _wait_check(container: str, after: int, expected: str, timeout: float = 60) -> str:
    """The first EditorsCheck outcome after the `after`-th that contains `expected` (a
    Document Server just restarted may answer a run or two with connection errors)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [run for run in _checks(container)[after:] if expected in run]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no check with {expected!r} in {container}: {_checks(container)[after:][-5:]}")
        time.sleep(1)


def test_cron_runs_the_onlyoffice_check_and_a_private_storage_address_needs_the_allowance(world):
    volume = world.volume()
    env = nextcloud_env(world)
    nc = world.run("nc", world.images["nextcloud"], env, mounts=(
        f"{volume}:/var/www/html", f"{GOLDEN_CONFIG}:{IMAGE_CONFIG_DIR}/{ONLYOFFICE_CONFIG}:ro"))
    wait_log(nc, "Initializing finished")
    assert occ(nc, "app:install", "onlyoffice").returncode == 0
    oo_env = {"JWT_ENABLED": "true", "JWT_SECRET": env["AINI_ONLYOFFICE_JWT_SECRET"], "JWT_HEADER": "Authorization"}
    oo = world.run("oo", world.images["onlyoffice"], oo_env)
    cron_env = {k: v for k, v in env.items() if k.startswith("AINI_") or k == "REDIS_HOST"}
    cron_env["AINI_DOUBLE_CRON_SECONDS_PER_MINUTE"] = "1"  # */5 runs every 5 s
    cron = world.run("cron", world.images["nextcloud"], cron_env, mounts=(f"{volume}:/var/www/html",),
                     entrypoint="/cron.sh")

    # Document Server defaults: the storage URL http://<nextcloud>/ is a private address.
    first = _wait_check(cron, 0, "ErrorCode = -4")
    assert "ONLYOFFICE server is not available" in first
    assert "It is private IP address" in docker("logs", oo).stdout
    assert _settings_error(nc) == "Error occurred in the document service: ErrorCode = -4"

    world.remove(oo)
    world.run("oo", world.images["onlyoffice"], {**oo_env, "ALLOW_PRIVATE_IP_ADDRESS": "true"})
    _wait_check(cron, len(_checks(cron)), "finished successfully")
    assert _settings_error(nc) == ""

    # The same wiring with another secret: the Document Server refuses the command.
    world.remove(world.name("oo"))
    world.run("oo", world.images["onlyoffice"], {**oo_env, "ALLOW_PRIVATE_IP_ADDRESS": "true",
                                                 "JWT_SECRET": secrets.token_hex(16)})
    _wait_check(cron, len(_checks(cron)), "ErrorCode = 6")
    assert _settings_error(nc) == "Error occurred in the document service: ErrorCode = 6"
    assert env["AINI_ONLYOFFICE_JWT_SECRET"] not in docker("logs", cron).stdout + docker("logs", nc).stdout
