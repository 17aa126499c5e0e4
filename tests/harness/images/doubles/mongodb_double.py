#!/usr/bin/env python3
"""MongoDB TEST DOUBLE (stands in for docker.io/library/mongo:8.0). Never shipped.

What AINI depends on, from docker-library/mongo 8.0/Dockerfile and 8.0/docker-entrypoint.sh:
- the image runs mongod as `mongodb`, UID/GID 999, and creates /data/db owned by it;
  started as root, the entrypoint chowns (user only) whatever under /data/db and
  /data/configdb is not owned by mongodb, then re-executes itself through gosu mongodb;
- MONGO_INITDB_ROOT_USERNAME/PASSWORD are used only when the data directory holds none of
  WiredTiger, journal, local.0, storage.bson (a first start): the root user is created
  in the `admin` database; later starts keep the users in the volume whatever the
  variables say. Exactly one of the two set is refused ("both must be specified").
- a client authenticating with a wrong user, password or database gets MongoDB's
  AuthenticationFailed (code 18, "Authentication failed."); mongod authenticates a client
  that asks even where authorization is off.

Not the wire protocol: clients speak one JSON document per line (modelled on the command
documents) -- {"ping": 1}, {"authenticate": user, "password": pw, "$db": authSource},
{"listDatabases": 1} -- and get {"ok": 1} or MongoDB's error document back. The users live
in the data volume as salted PBKDF2 hashes, never the password.

`python3 mongodb_double.py mongosh --quiet --eval "db.adminCommand('ping').ok"` is the
mongosh stand-in the image links (the catalog's health check).

Documents: {"insert": coll, "documents": [...], "$db": db} and {"find": coll, "$db": db},
kept in the volume (aini-double-data.json), so a backup has something to carry.

mongodump / mongorestore (the image links both; MongoDB Database Tools 100.x docs): with
`--archive` and no value the archive goes to stdout / comes from stdin; `--gzip` compresses
it (a restore without --gzip of a gzipped archive fails, as upstream's "stream or file does
not appear to be a mongodump archive"); `--config FILE` is a YAML file whose `password:` the
tool uses; `-u`, `--authenticationDatabase`; `--drop` drops each collection before restoring
it; `--quiet`. Other options are refused ("error parsing command line options: unknown
option"). The tools authenticate as any client does (AuthenticationFailed on a wrong
password), and never take a password in argv here (it would show in the process list).
"""
from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import secrets
import socket
import socketserver
import sys

MONGODB_UID = 999  # groupadd --gid 999 --system mongodb; useradd --uid 999 (8.0/Dockerfile)
DATA_DIRS = ("/data/db", "/data/configdb")
# docker-entrypoint.sh: any of these means "already initialised": skip initdb.
INIT_MARKERS = ("WiredTiger", "journal", "local.0", "storage.bson")
USERS_FILE = "aini-double-users.json"
DATA_FILE = "aini-double-data.json"
ARCHIVE_MAGIC = b"AINI-DOUBLE-MONGODUMP-ARCHIVE 1\n"
AUTH_FAILED = {"ok": 0, "errmsg": "Authentication failed.", "code": 18, "codeName": "AuthenticationFailed"}


def log(message: str) -> None:
    print(f"mongodb-double: {message}", flush=True)


def data_dir() -> str:
    return os.environ.get("AINI_DOUBLE_DATA") or DATA_DIRS[0]


def entrypoint_as_root(dirs: tuple[str, ...]) -> None:
    """`find /data/configdb /data/db \\! -user mongodb -exec chown mongodb '{}' +` then
    `exec gosu mongodb`. Only PID 1 is the container's entrypoint: the double run as a test
    subprocess (even by root) must not hand the test's directories to UID 999."""
    if os.geteuid() != 0 or os.getpid() != 1:
        return
    for top in dirs:
        for root, subdirs, files in os.walk(top):
            for name in [root, *(os.path.join(root, n) for n in subdirs + files)]:
                if os.lstat(name).st_uid != MONGODB_UID:
                    os.lchown(name, MONGODB_UID, -1)
    os.setgroups([])
    os.setgid(MONGODB_UID)
    os.setuid(MONGODB_UID)


def _hash(password: str, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 15000).hex()


class Users:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, USERS_FILE)

    def load(self) -> dict:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def create_root(self, user: str, password: str) -> None:
        salt = secrets.token_bytes(16)
        users = {"admin": {user: {"salt": salt.hex(), "hash": _hash(password, salt), "roles": ["root"]}}}
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(users, f)

    def check(self, db: str, user: str, password: str) -> str | None:
        """None when the credentials hold, else the reason mongod logs (never sent to the client)."""
        entry = self.load().get(db, {}).get(user)
        if entry is None:
            return f'UserNotFound: Could not find user "{user}" for db "{db}"'
        if not hmac.compare_digest(entry["hash"], _hash(password, bytes.fromhex(entry["salt"]))):
            return "AuthenticationFailed: SCRAM authentication failed, storedKey mismatch"
        return None


def initialise(directory: str) -> bool:
    """The entrypoint's initdb decision and mongod's own start; returns whether --auth is on."""
    user = os.environ.get("MONGO_INITDB_ROOT_USERNAME", "")
    password = os.environ.get("MONGO_INITDB_ROOT_PASSWORD", "")
    if bool(user) != bool(password):
        print("\nerror: missing 'MONGO_INITDB_ROOT_USERNAME' or 'MONGO_INITDB_ROOT_PASSWORD'\n"
              "       both must be specified for a user to be created\n", file=sys.stderr, flush=True)
        sys.exit(1)
    fresh = not any(os.path.exists(os.path.join(directory, m)) for m in INIT_MARKERS)
    try:
        # mongod's own files: it refuses to run on a directory it cannot write.
        for marker in ("WiredTiger", "storage.bson"):
            with open(os.path.join(directory, marker), "a"):
                pass
        if fresh and user:
            Users(directory).create_root(user, password)
            log(f'initdb: created user "{user}" in database "admin" with role root')
            log("MongoDB init process complete; ready for start up.")
    except OSError as exc:
        log(f"exception in initAndListen: IllegalOperation: cannot write to the data directory {directory}: "
            f"{exc.strerror}, terminating")
        sys.exit(100)
    if not fresh and user:
        log("data directory already initialised: MONGO_INITDB_* ignored, users kept from the volume")
    return bool(user)


def serve(directory: str, auth: bool, host: str, port: int) -> None:
    users = Users(directory)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            authenticated = False
            for raw in self.rfile:
                try:
                    cmd = json.loads(raw)
                except ValueError:
                    reply = {"ok": 0, "errmsg": "invalid command document", "code": 2, "codeName": "BadValue"}
                else:
                    reply, authenticated = self.command(cmd, authenticated)
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        def command(self, cmd: dict, authenticated: bool) -> tuple[dict, bool]:
            if "ping" in cmd or "hello" in cmd:
                return {"ok": 1}, authenticated
            if "authenticate" in cmd:
                db = cmd.get("$db") or "admin"
                reason = users.check(db, str(cmd["authenticate"]), str(cmd.get("password", "")))
                if reason:
                    log(f'Authentication failed: principalName "{cmd["authenticate"]}", '
                        f'authenticationDatabase "{db}", error "{reason}"')
                    return AUTH_FAILED, authenticated
                log(f'Successfully authenticated "{cmd["authenticate"]}" on "{db}"')
                return {"ok": 1}, True
            if any(k in cmd for k in ("insert", "find", "dumpAll", "restoreAll")):
                if auth and not authenticated:
                    return {"ok": 0, "errmsg": f"Command {next(iter(cmd))} requires authentication",
                            "code": 13, "codeName": "Unauthorized"}, authenticated
                return documents(directory, cmd), authenticated
            if "listDatabases" in cmd:
                if auth and not authenticated:
                    return {"ok": 0, "errmsg": "Command listDatabases requires authentication",
                            "code": 13, "codeName": "Unauthorized"}, authenticated
                return {"ok": 1, "databases": [{"name": "admin"}]}, authenticated
            return {"ok": 0, "errmsg": f"no such command: '{next(iter(cmd), '')}'", "code": 59,
                    "codeName": "CommandNotFound"}, authenticated

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server((host, port), Handler)
    log(f"Waiting for connections on {host}:{port} (auth {'on' if auth else 'off'})")
    server.serve_forever()


def documents(directory: str, cmd: dict) -> dict:
    """The document commands, on the JSON file in the data directory: {db: {coll: [docs]}}."""
    path = os.path.join(directory, DATA_FILE)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        data = {}
    db = cmd.get("$db") or "test"
    if "find" in cmd:
        return {"ok": 1, "documents": data.get(db, {}).get(cmd["find"], [])}
    if "dumpAll" in cmd:
        return {"ok": 1, "data": data}
    if "insert" in cmd:
        data.setdefault(db, {}).setdefault(cmd["insert"], []).extend(cmd.get("documents") or [])
    else:  # restoreAll: the archive's collections, each dropped first when asked
        for name, colls in cmd["restoreAll"].items():
            for coll, docs in colls.items():
                kept = [] if cmd.get("drop") else data.get(name, {}).get(coll, [])
                data.setdefault(name, {})[coll] = kept + docs
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return {"ok": 1}


def start() -> None:
    """The double's PID 1: entrypoint rules, then a listener; never returns."""
    directory = data_dir()
    entrypoint_as_root(DATA_DIRS if directory == DATA_DIRS[0] else (directory,))
    auth = initialise(directory)
    serve(directory, auth, os.environ.get("AINI_DOUBLE_HOST", "0.0.0.0"),
          int(os.environ.get("AINI_DOUBLE_PORT") or 27017))


# ------------------------------------------------------------------ clients


class MongoError(Exception):
    def __init__(self, reply: dict) -> None:
        super().__init__(reply.get("errmsg", "error"))
        self.reply = reply


class Client:
    """What a driver does over the double's line protocol (used by the LibreChat double)."""

    def __init__(self, host: str, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rwb")

    def command(self, doc: dict) -> dict:
        self.file.write(json.dumps(doc).encode() + b"\n")
        self.file.flush()
        line = self.file.readline()
        if not line:
            raise ConnectionError("connection closed by the MongoDB double")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise MongoError(reply)
        return reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def mongosh(args: list[str]) -> int:
    """Only what the catalog's health check runs; credentials on the command line are
    refused on purpose (they would show in the host's process list)."""
    if any(a in ("-u", "-p", "--username", "--password") for a in args):
        print("mongosh (AINI test double): credentials in argv are not supported", file=sys.stderr)
        return 2
    expr = args[args.index("--eval") + 1] if "--eval" in args and args.index("--eval") + 1 < len(args) else ""
    if "ping" not in expr:
        print("mongosh (AINI test double): only the ping evaluation is supported", file=sys.stderr)
        return 2
    try:
        client = Client("127.0.0.1", int(os.environ.get("AINI_DOUBLE_PORT") or 27017), timeout=5)
        ok = client.command({"ping": 1, "$db": "admin"})["ok"]
        client.close()
    except (OSError, ValueError, MongoError) as exc:
        print(f"MongoNetworkError: {exc}", file=sys.stderr)
        return 1
    print(ok if expr.rstrip().endswith(".ok") else json.dumps({"ok": ok}))
    return 0


TOOL_FLAGS = {"--archive", "--gzip", "--quiet", "-u", "--username", "--authenticationDatabase", "--config"}


def tool(name: str, args: list[str], stdin=None, stdout=None) -> int:
    """mongodump or mongorestore (see the module's docstring for what is enforced)."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    flags = TOOL_FLAGS | ({"--drop"} if name == "mongorestore" else set())
    options: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        arg, _, inline = args[i].partition("=")
        if arg not in flags:
            print(f"error parsing command line options: unknown option \"{arg.lstrip('-')}\"", file=sys.stderr)
            return 1
        if arg in ("-u", "--username", "--authenticationDatabase", "--config") and not inline:
            i += 1
            inline = args[i] if i < len(args) else ""
        options[arg] = inline or True
        i += 1
    if options.get("--archive") is not True:
        print(f"{name} (AINI test double): only --archive to stdout/stdin is supported", file=sys.stderr)
        return 2
    password = ""
    if isinstance(options.get("--config"), str):
        try:
            with open(str(options["--config"])) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip() == "password":
                        password = value.strip().strip('"').strip("'")
        except OSError as exc:
            print(f"error parsing config file: {exc}", file=sys.stderr)
            return 1
    user = options.get("-u") or options.get("--username")
    try:
        client = Client("127.0.0.1", int(os.environ.get("AINI_DOUBLE_PORT") or 27017), timeout=10)
        if user:
            client.command({"authenticate": user, "password": password,
                            "$db": options.get("--authenticationDatabase") or "admin"})
        if name == "mongodump":
            body = json.dumps(client.command({"dumpAll": 1})["data"]).encode()
            archive = ARCHIVE_MAGIC + body
            stdout.write(gzip.compress(archive) if options.get("--gzip") else archive)
            stdout.flush()
        else:
            raw = stdin.read()
            if options.get("--gzip"):
                try:
                    raw = gzip.decompress(raw)
                except OSError:
                    raw = b""
            if not raw.startswith(ARCHIVE_MAGIC):
                print("Failed: stream or file does not appear to be a mongodump archive", file=sys.stderr)
                return 1
            client.command({"restoreAll": json.loads(raw[len(ARCHIVE_MAGIC):]), "drop": bool(options.get("--drop"))})
        client.close()
    except MongoError as exc:
        print(f"Failed: can't create session: failed to connect to mongodb://127.0.0.1:27017/: "
              f"connection() error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"Failed: {exc}", file=sys.stderr)
        return 1
    return 0


def answer(method: str, path: str, headers: object, body: bytes) -> None:
    """Serves no HTTP: start() never returns."""
    return None


if __name__ == "__main__":
    if sys.argv[1:2] == ["mongosh"]:
        sys.exit(mongosh(sys.argv[2:]))
    if sys.argv[1:2] in (["mongodump"], ["mongorestore"]):
        sys.exit(tool(sys.argv[1], sys.argv[2:]))
    sys.exit("usage: mongodb_double.py mongosh --eval EXPR (the double itself starts from double.py)")
