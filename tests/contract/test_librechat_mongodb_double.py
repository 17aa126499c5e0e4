"""The MongoDB and LibreChat TEST DOUBLES refuse what upstream refuses (and accept what it
accepts): MONGO_INITDB_* only on an empty volume, authentication against the authSource
of MONGO_URI as the MongoDB driver reads it, the mongodb UID and the entrypoint's chown.
The upstream facts and their sources are in the doubles' module docstrings."""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOUBLES = REPO / "tests" / "harness" / "images" / "doubles"
sys.path.insert(0, str(DOUBLES))
import librechat_double  # noqa: E402
import mongodb_double  # noqa: E402

from .helpers import free_port, start_double_process, stop_double_process  # noqa: E402


def _env(service: str, data: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGO", "CREDS", "JWT", "LIBRECHAT"))}
    return {**env, "AINI_DOUBLE": service, "AINI_DOUBLE_HOST": "127.0.0.1", "AINI_DOUBLE_PORT": str(port),
            "AINI_DOUBLE_DATA": str(data), "PYTHONDONTWRITEBYTECODE": "1", **extra}


def start_mongodb(data: Path, port: int, **env: str) -> subprocess.Popen:
    return start_double_process("mongodb", data, port, env=_env("mongodb", data, port, **env), argv=())


stop = stop_double_process


def run_librechat(data: Path, port: int, mongo_uri: str, timeout: float = 20, **env: str) -> tuple[int | None, str]:
    """LibreChat's start-up: None when it got as far as listening (then stopped)."""
    creds = {"CREDS_KEY": secrets.token_hex(32), "CREDS_IV": secrets.token_hex(16),
             "JWT_SECRET": secrets.token_hex(32), "JWT_REFRESH_SECRET": secrets.token_hex(32)}
    full = _env("librechat", data, port, MONGO_URI=mongo_uri, **{**creds, **env})
    process = subprocess.Popen([sys.executable, str(DOUBLES / "double.py")], env=full,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process.returncode, process.stdout.read().decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return None, stop(process)
        except OSError:
            time.sleep(0.05)
    return None, stop(process)


@pytest.fixture
def mongo(tmp_path: Path):
    port = free_port()
    password = secrets.token_urlsafe(18)
    (tmp_path / "db").mkdir()
    process = start_mongodb(tmp_path / "db", port, MONGO_INITDB_ROOT_USERNAME="librechat",
                            MONGO_INITDB_ROOT_PASSWORD=password)
    yield port, password, tmp_path / "db", process
    log = stop(process)
    assert password not in log


def _client(port: int) -> mongodb_double.Client:
    return mongodb_double.Client("127.0.0.1", port)


# ----------------------------------------------------------------------- MongoDB


def test_initdb_creates_the_root_user_in_admin_and_a_wrong_password_gets_code_18(mongo):
    port, password, data, _ = mongo
    client = _client(port)
    with pytest.raises(mongodb_double.MongoError) as refused:
        client.command({"listDatabases": 1})
    assert refused.value.reply["codeName"] == "Unauthorized"
    with pytest.raises(mongodb_double.MongoError) as wrong:
        client.command({"authenticate": "librechat", "password": password + "x", "$db": "admin"})
    assert wrong.value.reply == mongodb_double.AUTH_FAILED
    with pytest.raises(mongodb_double.MongoError):  # the user lives in admin, not in LibreChat
        client.command({"authenticate": "librechat", "password": password, "$db": "LibreChat"})
    assert client.command({"authenticate": "librechat", "password": password, "$db": "admin"})["ok"] == 1
    assert client.command({"listDatabases": 1})["ok"] == 1
    client.close()
    stored = (data / mongodb_double.USERS_FILE).read_text()
    assert password not in stored and oct((data / mongodb_double.USERS_FILE).stat().st_mode & 0o777) == "0o600"


def test_a_second_start_with_other_credentials_keeps_the_first_user(tmp_path: Path):
    data = tmp_path / "db"
    data.mkdir()
    port = free_port()
    first, second = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    stop(start_mongodb(data, port, MONGO_INITDB_ROOT_USERNAME="librechat", MONGO_INITDB_ROOT_PASSWORD=first))
    process = start_mongodb(data, port, MONGO_INITDB_ROOT_USERNAME="other", MONGO_INITDB_ROOT_PASSWORD=second)
    try:
        client = _client(port)
        with pytest.raises(mongodb_double.MongoError):
            client.command({"authenticate": "other", "password": second, "$db": "admin"})
        assert client.command({"authenticate": "librechat", "password": first, "$db": "admin"})["ok"] == 1
        client.close()
    finally:
        log = stop(process)
    assert "MONGO_INITDB_* ignored" in log and second not in log and first not in log


def test_only_one_of_the_initdb_variables_is_refused(tmp_path: Path):
    result = subprocess.run([sys.executable, str(DOUBLES / "double.py")], capture_output=True, text=True, timeout=20,
                            env=_env("mongodb", tmp_path, free_port(), MONGO_INITDB_ROOT_USERNAME="librechat"))
    assert result.returncode == 1
    assert "both must be specified for a user to be created" in result.stderr


def test_mongosh_pings_the_double_and_refuses_credentials_in_argv(mongo):
    port, password, _, _ = mongo
    mongosh = [sys.executable, str(DOUBLES / "mongodb_double.py"), "mongosh", "--quiet", "--eval"]
    env = {**os.environ, "AINI_DOUBLE_PORT": str(port)}
    ok = subprocess.run([*mongosh, "db.adminCommand('ping').ok"], capture_output=True, text=True, env=env, timeout=10)
    assert (ok.returncode, ok.stdout.strip()) == (0, "1")
    refused = subprocess.run([*mongosh, "db.adminCommand('ping').ok", "-u", "librechat"], capture_output=True,
                             text=True, env=env, timeout=10)
    assert refused.returncode == 2
    down = subprocess.run([*mongosh, "db.adminCommand('ping').ok"], capture_output=True, text=True, timeout=10,
                          env={**os.environ, "AINI_DOUBLE_PORT": str(free_port())})
    assert down.returncode == 1


# --------------------------------------------------------------------- LibreChat


@pytest.mark.parametrize(("uri", "expected"), [
    ("mongodb://librechat:pw@aini-mongodb:27017/LibreChat?authSource=admin",
     {"host": "aini-mongodb", "port": 27017, "db": "LibreChat", "username": "librechat", "auth_source": "admin"}),
    ("mongodb://librechat:pw@aini-mongodb:27017/LibreChat",
     {"db": "LibreChat", "auth_source": "LibreChat"}),  # the path's database, not admin
    ("mongodb://librechat:pw@aini-mongodb", {"port": 27017, "db": None, "auth_source": "admin"}),
    ("mongodb://librechat:p%40ss@h/LibreChat?AUTHSOURCE=admin", {"password": "p@ss", "auth_source": "admin"}),
])
def test_mongo_uri_is_read_as_the_driver_reads_it(uri: str, expected: dict):
    parsed = librechat_double.parse_mongo_uri(uri)
    assert {k: parsed[k] for k in expected} == expected


@pytest.mark.parametrize(("uri", "message"), [
    ("mongodb://librechat:pa/ss@h:27017/LibreChat", "Password contains unescaped characters"),  # base64 "/"
    ("mongodb://librechat:pa:ss@h:27017/LibreChat", "Password contains unescaped characters"),
    ("mongodb://libre/chat:pw@h/LibreChat", "Username contains unescaped characters"),
    ("postgres://h/LibreChat", "Invalid scheme"),
])
def test_a_mongo_uri_the_driver_refuses_is_refused(uri: str, message: str):
    with pytest.raises(librechat_double.MongoParseError, match=message):
        librechat_double.parse_mongo_uri(uri)


def test_librechat_starts_only_with_the_credentials_and_authsource_of_the_root_user(mongo, tmp_path: Path):
    port, password, _, _ = mongo
    base = f"mongodb://librechat:{password}@127.0.0.1:{port}/LibreChat"
    app = tmp_path / "app"
    app.mkdir()
    rc, log = run_librechat(app, free_port(), base + "?authSource=admin")
    assert rc is None and "Connected to MongoDB" in log, log
    # Without authSource the driver authenticates against LibreChat, where no user exists.
    rc, log = run_librechat(app, free_port(), base)
    assert rc == 1 and "MongoServerError: Authentication failed. (code 18" in log, log
    rc, log = run_librechat(app, free_port(), f"mongodb://librechat:wrong@127.0.0.1:{port}/LibreChat?authSource=admin")
    assert rc == 1 and "Authentication failed." in log
    assert password not in log


def test_librechat_without_mongo_uri_is_refused(tmp_path: Path):
    rc, log = run_librechat(tmp_path, free_port(), "")
    assert rc == 1 and "Please define the MONGO_URI environment variable" in log


def test_missing_credentials_are_generated_into_the_temp_file_as_upstream(mongo, tmp_path: Path):
    port, password, _, _ = mongo
    temp = tmp_path / "data" / ".env.temp"
    rc, log = run_librechat(tmp_path, free_port(), f"mongodb://librechat:{password}@127.0.0.1:{port}/x?authSource=admin",
                            CREDS_KEY="", LIBRECHAT_TEMP_CREDENTIALS_PATH=str(temp))
    assert rc is None, log
    assert "Generated temporary credentials for CREDS_KEY" in log
    line = next(x for x in temp.read_text().splitlines() if x.startswith("CREDS_KEY="))
    assert len(line.split("=", 1)[1]) == 64 and oct(temp.stat().st_mode & 0o777) == "0o600"
    assert line.split("=", 1)[1] not in log


# ---------------------------------------------------------------- docker: UIDs


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check)


def _wait_running(name: str, probe: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _docker("exec", name, *probe, check=False).returncode == 0:
            return
        state = _docker("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip()
        if state == "false":
            raise AssertionError(_docker("logs", name, check=False).stdout)
        time.sleep(0.5)
    raise AssertionError(f"{name} not ready: {_docker('logs', name, check=False).stdout}")


def test_images_run_as_upstream_uids_chown_the_volume_and_keep_first_credentials():
    from tests.harness import stack_images

    mongo_image, chat_image = stack_images.double_image("mongodb"), stack_images.double_image("librechat")
    tag = uuid.uuid4().hex[:8]
    net, vol, chat_vol = f"aini-t-net-{tag}", f"aini-t-mongo-{tag}", f"aini-t-data-{tag}"
    mongo_name, first, second = f"aini-t-mongodb-{tag}", secrets.token_hex(12), secrets.token_hex(12)
    env_file = Path(f"/tmp/aini-t-{tag}.env")
    try:
        _docker("network", "create", net)
        _docker("volume", "create", vol)
        _docker("volume", "create", chat_vol)
        # A file root left in the volume: the entrypoint hands it to mongodb.
        _docker("run", "--rm", "-v", f"{vol}:/data/db", "--entrypoint", "touch", mongo_image, "/data/db/leftover")

        def mongodb(password: str) -> None:
            env_file.write_text(f"MONGO_INITDB_ROOT_USERNAME=librechat\nMONGO_INITDB_ROOT_PASSWORD={password}\n")
            _docker("run", "-d", "--name", mongo_name, "--network", net, "--network-alias", "mongodb",
                    "--env-file", str(env_file), "-v", f"{vol}:/data/db", mongo_image)
            _wait_running(mongo_name, ["mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"])

        mongodb(first)
        owners = _docker("exec", mongo_name, "stat", "-c", "%u %n", "/data/db/leftover", "/data/db/WiredTiger").stdout
        assert owners.split() == ["999", "/data/db/leftover", "999", "/data/db/WiredTiger"]
        status = _docker("exec", mongo_name, "cat", "/proc/1/status").stdout
        assert next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1:] == ["999"] * 4
        _docker("rm", "-f", mongo_name)
        mongodb(second)  # the volume is initialised: the second password is ignored

        def librechat(password: str) -> subprocess.CompletedProcess:
            name = f"aini-t-librechat-{tag}-{uuid.uuid4().hex[:4]}"
            env_file.write_text(f"MONGO_URI=mongodb://librechat:{password}@mongodb:27017/LibreChat?authSource=admin\n")
            _docker("run", "-d", "--name", name, "--network", net, "--env-file", str(env_file),
                    "-v", f"{chat_vol}:/app/data", chat_image)
            try:
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline:
                    if _docker("exec", name, "wget", "-qO-", "http://127.0.0.1:3080/health", check=False).returncode == 0:
                        return subprocess.CompletedProcess([], 0, _docker("logs", name).stdout, "")
                    if _docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false":
                        code = int(_docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout)
                        return subprocess.CompletedProcess([], code, _docker("logs", name).stdout, "")
                    time.sleep(0.5)
                raise AssertionError(_docker("logs", name).stdout)
            finally:
                uid = _docker("exec", name, "cat", "/proc/1/status", check=False).stdout
                _docker("rm", "-f", name, check=False)
                if uid:
                    assert next(x for x in uid.splitlines() if x.startswith("Uid:")).split()[1] == "1000"

        refused = librechat(second)
        assert refused.returncode == 1 and "Authentication failed." in refused.stdout
        accepted = librechat(first)
        assert accepted.returncode == 0, accepted.stdout
        # /app/data is not among the directories the image creates: Docker makes it root-owned.
        assert "EACCES: permission denied: /app/data is owned by 0:0" in accepted.stdout
        assert first not in accepted.stdout + refused.stdout and second not in refused.stdout
    finally:
        env_file.unlink(missing_ok=True)
        _docker("rm", "-f", mongo_name, check=False)
        _docker("volume", "rm", "-f", vol, chat_vol, check=False)
        _docker("network", "rm", net, check=False)


def test_the_double_modules_never_print_a_password(tmp_path: Path):
    """The helper tests above check logs; this one checks the users file format too."""
    users = mongodb_double.Users(str(tmp_path))
    users.create_root("root", "s3cret-pw")
    assert "s3cret-pw" not in json.dumps(users.load())
    assert users.check("admin", "root", "s3cret-pw") is None
    assert users.check("admin", "root", "nope").startswith("AuthenticationFailed")
    assert users.check("LibreChat", "root", "s3cret-pw").startswith("UserNotFound")


# ------------------------------------------------------------ mongodump / mongorestore


def _tools_env(tmp_path: Path, port: int, user: str, password: str) -> dict[str, str]:
    """The MongoDB container's environment for the catalog's dump and restore commands, with
    the image's mongodump/mongorestore (the double's) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("mongodump", "mongorestore"):
        shim = bin_dir / tool
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} {DOUBLES / "mongodb_double.py"} {tool} "$@"\n')
        shim.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "AINI_DOUBLE_PORT": str(port),
            "MONGO_INITDB_ROOT_USERNAME": user, "MONGO_INITDB_ROOT_PASSWORD": password}


def test_the_catalogs_dump_and_restore_round_trip_the_documents(mongo, tmp_path):
    from aini import catalog

    port, password, _, _ = mongo
    backup = catalog.by_name("mongodb").backup
    env = _tools_env(tmp_path, port, "librechat", password)
    client = _client(port)
    client.command({"authenticate": "librechat", "password": password, "$db": "admin"})
    client.command({"insert": "conversations", "documents": [{"title": "kept"}], "$db": "LibreChat"})
    dump = subprocess.run(["sh", "-c", backup.dump], env=env, capture_output=True, timeout=30)
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout[:2] == b"\x1f\x8b" and password.encode() not in dump.stderr  # gzip; no password shown
    client.command({"insert": "conversations", "documents": [{"title": "later"}], "$db": "LibreChat"})
    restore = subprocess.run(["sh", "-c", backup.restore], env=env, input=dump.stdout, capture_output=True,
                             timeout=30)
    assert restore.returncode == 0, restore.stderr
    assert client.command({"find": "conversations", "$db": "LibreChat"})["documents"] == [{"title": "kept"}]
    client.close()


def test_the_tools_refuse_a_wrong_password_unknown_options_and_a_plain_stream_read_as_gzip(mongo, tmp_path):
    from aini import catalog

    port, password, _, _ = mongo
    backup = catalog.by_name("mongodb").backup
    wrong = subprocess.run(["sh", "-c", backup.dump], env=_tools_env(tmp_path, port, "librechat", password + "x"),
                           capture_output=True, timeout=30)
    assert wrong.returncode == 1 and b"Authentication failed." in wrong.stderr and wrong.stdout == b""
    env = _tools_env(tmp_path, port, "librechat", password)
    argv = subprocess.run(["mongodump", "--archive", "-p", password], env=env, capture_output=True, timeout=30)
    assert argv.returncode == 1 and b'unknown option "p"' in argv.stderr
    plain = subprocess.run(["sh", "-c", backup.restore], env=env, input=b"not an archive", capture_output=True,
                           timeout=30)
    assert plain.returncode == 1 and b"does not appear to be a mongodump archive" in plain.stderr
