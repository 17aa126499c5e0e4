#!/usr/bin/env python3
"""LibreChat TEST DOUBLE start-up (stands in for registry.librechat.ai/danny-avila/librechat
v0.8.8). Never shipped. double.py serves /health once start() has returned.

Upstream facts it implements (danny-avila/LibreChat):
- Dockerfile: FROM node:*-alpine, `USER node` (UID 1000), WORKDIR /app owned by node, and
  `mkdir -p /app/client/public/images /app/logs /app/uploads` run as node: volumes mounted
  there start node-owned; a mount point the image lacks is created root-owned by Docker.
- packages/data-schemas/src/config/utils.ts getLogDirectory(): LIBRECHAT_LOG_DIR, else
  <cwd>/logs (/app/logs: /app does not contain "LibreChat").
- api/db/connect.js: no MONGO_URI -> throws "Please define the MONGO_URI environment
  variable"; api/server/index.js awaits connectDb() before listening, and its
  uncaughtException handler logs "There was an uncaught error:" and exits 1, so a refused
  authentication stops the server.
- The URI is parsed as the MongoDB Node driver does (mongodb-connection-string-url
  HOSTS_REGEX; ':/?#[]@' unescaped in user or password is a MongoParseError; percent-
  decoding); authSource: the option if given, else the database in the path, else admin
  (node-mongodb-native connection_string.ts "inherit the dbName"; MongoDB connection-string
  docs). Server selection gives up after 30 s (serverSelectionTimeoutMS default 30000).
- packages/api/src/credentials.ts (PR #14680, in v0.8.8): a missing CREDS_KEY, CREDS_IV,
  JWT_SECRET or JWT_REFRESH_SECRET is generated and persisted to
  LIBRECHAT_TEMP_CREDENTIALS_PATH (default <cwd>/.env.temp) with a warning -- not refused;
  a malformed CREDS_KEY is not validated at start either (issue #14699). So the double
  refuses neither, and logs upstream's warnings.
- config/create-user.js (`node config/create-user.js <email> <name> <username> [password]
  [--email-verified=...]`, cwd /app): what argv lacks is asked on stdin (config/helpers.js
  readline), a password given in argv draws a warning; an email without '@' is "Error:
  Invalid email address!", an existing email or username "Error: A user with that email or
  username already exists!", each exit 1; registerUser makes the first user of the database
  ADMIN (AuthService.js: countUsers() === 0), the others USER; the name is 3-80 characters
  and the password 8-128 (validators.js registerSchema); success prints "User created
  successfully!" and exits 0. It bypasses ALLOW_REGISTRATION (only the /register route
  checks it).
- POST /api/auth/login {email, password} (localStrategy.js, requireLocalAuth.js): no such
  email 404 {"message": "Email does not exist."}, a wrong password 404 {"message":
  "Incorrect password."}, an unverified email 422 unless ALLOW_UNVERIFIED_EMAIL_LOGIN;
  otherwise 200 with a token and the user.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from urllib.parse import parse_qsl, unquote

import mongodb_double

CREDENTIALS = ("CREDS_KEY", "CREDS_IV", "JWT_SECRET", "JWT_REFRESH_SECRET")
# mongodb-connection-string-url / node-mongodb-native HOSTS_REGEX, verbatim.
HOSTS_REGEX = re.compile(
    r"^(?P<protocol>mongodb(?:\+srv|)):\/\/(?:(?P<username>[^:]*)(?::(?P<password>[^@]*))?@)?"
    r"(?P<hosts>(?!:)[^\/?@]+)(?P<rest>.*)")
ILLEGAL = re.compile(r"[:/?#\[\]@]")
SERVER_SELECTION_TIMEOUT = 30.0


def log(message: str) -> None:
    print(f"librechat-double: {message}", flush=True)


class MongoParseError(ValueError):
    pass


def parse_mongo_uri(uri: str) -> dict:
    match = HOSTS_REGEX.match(uri)
    if not match:
        raise MongoParseError('Invalid scheme, expected connection string to start with "mongodb://" or "mongodb+srv://"')
    username, password, hosts, rest = match["username"], match["password"], match["hosts"], match["rest"]
    if username is not None and ILLEGAL.search(username):
        raise MongoParseError("Username contains unescaped characters")  # upstream appends the name
    if password is not None and ILLEGAL.search(password):
        raise MongoParseError("Password contains unescaped characters")
    path, _, query = rest.partition("?")
    options = {k.lower(): v for k, v in parse_qsl(query, keep_blank_values=True)}
    db = unquote(path.lstrip("/")) or None
    first = hosts.split(",")[0]  # AINI has one host; the driver would try them all
    host, sep, port = first.rpartition(":")
    if not sep:
        host, port = first, "27017"
    user = unquote(username) if username else None
    return {
        "host": host, "port": int(port), "db": db, "username": user,
        "password": unquote(password) if password is not None else None,
        # authSource given wins; else the path's database; else admin.
        "auth_source": options.get("authsource") or db or "admin",
    }


def app_dir() -> str:
    return os.environ.get("AINI_DOUBLE_DATA") or "/app"


def bootstrap_credentials(cwd: str) -> None:
    missing = [n for n in CREDENTIALS if not os.environ.get(n, "").strip()]
    if not missing:
        return
    path = os.environ.get("LIBRECHAT_TEMP_CREDENTIALS_PATH", "").strip() or os.path.join(cwd, ".env.temp")
    for name in missing:
        os.environ[name] = secrets.token_hex(16 if name == "CREDS_IV" else 32)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# Automatically generated by LibreChat. Keep this file private and persistent.\n")
            f.writelines(f"{n}={os.environ[n]}\n" for n in missing)
        log(f"[credentials] Generated temporary credentials for {', '.join(missing)}. They are stored in "
            f"{path}; configure permanent values before production use.")
    except OSError:
        log(f"[credentials] Could not persist temporary credentials to {path}. "
            "The generated values will only remain valid for this process.")


def check_writable(cwd: str) -> None:
    """LibreChat writes these at run time (logs from the start, uploads and images later).
    Upstream does not check them at start: a directory node cannot write surfaces later as
    EACCES; the double says so at start, where a test can see it."""
    log_dir = os.environ.get("LIBRECHAT_LOG_DIR") or os.path.join(cwd, "logs")
    for directory in (log_dir, os.path.join(cwd, "uploads"), os.path.join(cwd, "client/public/images"),
                      os.path.join(cwd, "data")):
        if os.path.isdir(directory) and not os.access(directory, os.W_OK | os.X_OK):
            st = os.stat(directory)
            log(f"EACCES: permission denied: {directory} is owned by {st.st_uid}:{st.st_gid} "
                f"and not writable by uid {os.geteuid()}")
    try:
        with open(os.path.join(log_dir, f"error-{time.strftime('%Y-%m-%d')}.log"), "a"):
            pass
    except OSError as exc:
        log(f"[winston] cannot open the log file in {log_dir}: {exc.strerror}")


def connect(uri: dict) -> None:
    deadline = time.monotonic() + SERVER_SELECTION_TIMEOUT
    while True:
        try:
            client = mongodb_double.Client(uri["host"], uri["port"], timeout=5)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                fail(f"MongooseServerSelectionError: connect {uri['host']}:{uri['port']}: {exc}")
            time.sleep(1)
    try:
        if uri["username"] is not None:
            client.command({"authenticate": uri["username"], "password": uri["password"] or "",
                            "$db": uri["auth_source"]})
        client.command({"ping": 1, "$db": uri["db"] or "test"})
    except mongodb_double.MongoError as exc:
        r = exc.reply
        fail(f"MongoServerError: {r.get('errmsg')} (code {r.get('code')}, codeName {r.get('codeName')})")
    finally:
        client.close()


def fail(error: str) -> None:
    log(f"There was an uncaught error: {error}")
    sys.exit(1)


def start() -> None:
    uri_text = os.environ.get("MONGO_URI", "")
    if not uri_text:
        log("Error: Please define the MONGO_URI environment variable")
        sys.exit(1)
    cwd = app_dir()
    bootstrap_credentials(cwd)
    check_writable(cwd)
    try:
        uri = parse_mongo_uri(uri_text)
    except MongoParseError as exc:
        fail(f"MongoParseError: {exc}")
    connect(uri)
    log("Connected to MongoDB")


# ------------------------------------------------------------------ users


def _users() -> tuple[mongodb_double.Client, str]:
    """A connection to LibreChat's database, as the app's own (MONGO_URI)."""
    uri = parse_mongo_uri(os.environ["MONGO_URI"])
    client = mongodb_double.Client(uri["host"], uri["port"])
    if uri["username"] is not None:
        client.command({"authenticate": uri["username"], "password": uri["password"] or "", "$db": uri["auth_source"]})
    return client, uri["db"] or "test"


def _find_users(client: mongodb_double.Client, db: str) -> list[dict]:
    return client.command({"find": "users", "$db": db})["documents"]


def _hash(password: str, salt: str) -> str:
    """The stored form: the salt, then the MongoDB double's hash."""
    return salt + "$" + mongodb_double._hash(password, salt.encode())


def create_user(args: list[str]) -> int:
    print("Create a new user account!", flush=True)
    email = name = username = password = None
    verified: bool | None = None
    for arg in args:
        if arg.startswith("--email-verified="):
            verified = arg.split("=", 1)[1].lower() != "false"
        elif arg.startswith("--provider="):
            continue
        elif email is None:
            email = arg
        elif name is None:
            name = arg
        elif username is None:
            username = arg
        elif password is None:
            print("Warning: password passed in as argument, this is not secure!", flush=True)
            password = arg

    def ask(question: str) -> str:
        print(question + "\n> ", flush=True)
        return sys.stdin.readline().rstrip("\n")

    email = ask("Email:") if email is None else email
    if "@" not in email:
        print("Error: Invalid email address!")
        return 1
    default = email.split("@")[0]
    name = (ask(f"Name: (default is: {default})") or default) if name is None else name
    username = (ask(f"Username: (default is: {default})") or default) if username is None else username
    if password is None:
        password = ask("Password: (leave blank, to generate one)")
        if not password:
            password = secrets.token_urlsafe(12)
            print(f"Your password is: {password}")
    if verified is None:
        verified = ask("Email verified? (Y/n, default is Y):").lower() != "n"
    client, db = _users()
    try:
        existing = _find_users(client, db)
        if any(u.get("email") == email or u.get("username") == username for u in existing):
            print("Error: A user with that email or username already exists!")
            return 1
        if not 3 <= len(name) <= 80 or not 8 <= len(password) <= 128:
            print("Error: Name must be 3-80 characters, password 8-128")
            return 1
        salt = secrets.token_hex(8)
        client.command({"insert": "users", "$db": db, "documents": [{
            "email": email, "name": name, "username": username, "password": _hash(password, salt),
            "provider": "local", "emailVerified": verified, "role": "USER" if existing else "ADMIN"}]})
    finally:
        client.close()
    print("User created successfully!")
    print(f"Email verified: {str(verified).lower()}")
    return 0


def login(body: bytes) -> tuple[int, str, str]:
    def reply(status: int, data: dict) -> tuple[int, str, str]:
        return status, "application/json; charset=utf-8", json.dumps(data)

    try:
        form = json.loads(body or b"{}")
        email, password = str(form.get("email", "")), str(form.get("password", ""))
    except (ValueError, AttributeError):
        return reply(400, {"message": "Invalid request"})
    if "@" not in email or not 8 <= len(password) <= 128:
        return reply(404, {"message": "Invalid email or password"})
    client, db = _users()
    try:
        user = next((u for u in _find_users(client, db) if u.get("email") == email.strip()), None)
    finally:
        client.close()
    if user is None:
        return reply(404, {"message": "Email does not exist."})
    salt = str(user["password"]).split("$", 1)[0]
    if not secrets.compare_digest(_hash(password, salt), user["password"]):
        return reply(404, {"message": "Incorrect password."})
    if not user.get("emailVerified") and os.environ.get("ALLOW_UNVERIFIED_EMAIL_LOGIN", "").lower() != "true":
        return reply(422, {"message": "Email not verified."})
    public = {k: user[k] for k in ("email", "name", "username", "role", "provider")}
    return reply(200, {"token": secrets.token_hex(24), "user": public})


def answer(method: str, path: str, headers: object, body: bytes) -> tuple[int, str, str] | None:
    """Login; double.py's table serves /health and /."""
    if method == "POST" and path == "/api/auth/login":
        return login(body)
    return None


if __name__ == "__main__":  # `node config/create-user.js ...` in the image (install-double.sh)
    script, *rest = sys.argv[1:] or [""]
    if os.path.normpath(os.path.join(os.getcwd(), script)) != "/app/config/create-user.js":
        sys.exit(f"librechat double: node runs only /app/config/create-user.js here, not {script!r}")
    sys.exit(create_user(rest))
