"""Nextcloud (apache image) TEST DOUBLE: the upstream entrypoint's install rules, `php occ`
and `cron.php` stand-ins, status.php, and the OnlyOffice connector's calls. Never shipped.

Upstream facts it implements (each checked against the source named):
- The image keeps Nextcloud in /usr/src/nextcloud and its own config/*.php in
  /usr/src/nextcloud/config; /var/www is www-data:root with g=u; the www-data crontab runs
  `php -f /var/www/html/cron.php` every 5 minutes; /cron.sh is `busybox crond -f -L
  /dev/stdout` (nextcloud/docker 32/apache/Dockerfile, Dockerfile-debian.template).
- entrypoint.sh, as root, when the image is newer than /var/www/html/version.php: rsyncs
  /usr/src/nextcloud/ to /var/www/html/ (--chown www-data, excluding config, data,
  custom_apps, themes, version.php), then copies each of config, data, custom_apps, themes
  ONLY where /var/www/html/<dir> is missing or empty, then version.php. Data of a newer
  version, or more than one major older, stops it with exit 1 ("downgrading is not
  supported"; "It is only possible to upgrade one major version at a time"). On a new instance
  it installs (`php occ maintenance:install`, as www-data, up to 11 tries 10 s apart, "Installing
  of nextcloud failed!" and exit 1 after) only when NEXTCLOUD_ADMIN_USER and
  NEXTCLOUD_ADMIN_PASSWORD are set and one database set is complete (SQLITE_DATABASE; or
  MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, MYSQL_HOST; or the POSTGRES_* four), else
  prints "Next step: Access your instance to finish the web-based installation!". Then it
  warns about config files that differ from the image's (nextcloud/docker
  docker-entrypoint.sh).
- occ and cron.php first create config/config.php if they can; when it is not writable
  they print 'Cannot write into "config" directory!' and exit with status 0 (nextcloud/server
  lib/base.php checkConfig: `exit;`), so the entrypoint's install loop takes that as a
  success and nothing is installed (symptom: nextcloud/docker#1158, #965).
- Nextcloud merges every config/*.config.php into its configuration and writes the merged
  array, values read with getenv() included, into config.php on every change (nextcloud/
  server lib/private/Config.php readData/writeData).
- status.php answers `{"installed":false,...}` until installed (json_encode: no spaces).
- The OnlyOffice connector's EditorsCheck (a background job, so it runs where cron.php
  runs) does the connector's checkDocServiceUrl: healthcheck, the `version` command, a
  conversion of the connector's empty file served at StorageUrl, then fetches the result;
  a failure becomes the connector's settings error (onlyoffice-nextcloud lib/Cron/
  EditorsCheck.php, lib/DocumentService.php). The empty file answers 403 without a valid
  JWT from the Document Server (lib/Controller/CallbackController.php emptyfile).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

HTML = Path(os.environ.get("AINI_DOUBLE_NEXTCLOUD_HTML", "/var/www/html"))
SRC = Path("/usr/src/nextcloud")
WWW_DATA = 33
# The release this image stands for: the catalog's pin, or the build's AINI_DOUBLE_VERSION
# (an update in the tests). Like upstream's entrypoint, start() reads it from the image's
# /usr/src/nextcloud/version.php, which the build writes.
IMAGE_VERSION = tuple(int(n) for n in ((os.environ.get("AINI_DOUBLE_VERSION") or "34.0.4") + ".0.0.0").split(".")[:4])
IMAGE_CONFIGS = ("apache-pretty-urls.config.php", "apcu.config.php", "apps.config.php", "autoconfig.php",
                 "redis.config.php", "reverse-proxy.config.php", "s3.config.php", "smtp.config.php",
                 "swift.config.php", "upgrade-disable-web.config.php")
EXCLUDED = {"config", "data", "custom_apps", "themes", "version.php", "nextcloud-init-sync.lock"}
CRONTAB = Path("/var/spool/cron/crontabs/www-data")
APPS = HTML / ".aini-double-apps.json"
OCC_LOG = HTML / ".aini-double-occ.log"
CANNOT_WRITE = ('Cannot write into "config" directory!\n'
                "This can usually be fixed by giving the web server write access to the config directory.\n\n"
                'But, if you prefer to keep config.php file read only, set the option "config_is_read_only" '
                "to true in it.\n")
EMPTY_DOCX = b"PK\x05\x06" + b"\x00" * 18  # an empty zip: what the double converts


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------- the image (build)

def build() -> None:
    """Run once by install-double.sh: the layout of upstream's image."""
    (SRC / "config").mkdir(parents=True, exist_ok=True)
    for name in IMAGE_CONFIGS:
        (SRC / "config" / name).write_text(f"<?php\n// stand-in for the image's config/{name} (AINI test double)\n")
    (SRC / "version.php").write_text("<?php\n$OC_Version = array(%s);\n$OC_VersionString = '%s';\n"
                                     % (",".join(map(str, IMAGE_VERSION)), ".".join(map(str, IMAGE_VERSION[:3]))))
    for name in ("occ", "cron.php", "status.php", "index.php"):
        (SRC / name).write_text("<?php\n// stand-in (AINI test double): see nextcloud_double.py\n")
    for name in ("data", "custom_apps"):
        (SRC / name).mkdir(exist_ok=True)
    (SRC / "themes").mkdir(exist_ok=True)
    (SRC / "themes" / "README").write_text("themes (AINI test double)\n")
    Path("/var/www/data").mkdir(parents=True, exist_ok=True)
    HTML.mkdir(parents=True, exist_ok=True)
    for path in [Path("/var/www"), *Path("/var/www").rglob("*")]:  # chown -R www-data:root; chmod -R g=u
        os.chown(path, WWW_DATA, 0)
        mode = path.stat().st_mode
        os.chmod(path, (mode & ~0o070) | ((mode & 0o700) >> 3))
    CRONTAB.parent.mkdir(parents=True, exist_ok=True)
    CRONTAB.write_text("*/5 * * * * php -f /var/www/html/cron.php\n")


# --------------------------------------------------------------- the entrypoint

def _version_of(path: Path) -> tuple[int, ...]:
    if not path.is_file():
        return (0, 0, 0, 0)
    found = re.search(r"\$OC_Version = array\(([\d, ]+)\)", path.read_text())
    return tuple(int(x) for x in found.group(1).split(",")) if found else (0, 0, 0, 0)


def _copy(src: Path, dst: Path) -> None:
    """rsync -rlDog --chown www-data:www-data for one entry."""
    if src.is_dir():
        dst.mkdir(exist_ok=True)
        for child in src.iterdir():
            _copy(child, dst / child.name)
    else:
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)
    os.chown(dst, WWW_DATA, WWW_DATA)


def _empty(path: Path) -> bool:
    return not path.is_dir() or not any(path.iterdir())


def run_as_www_data(*args: str) -> int:
    """entrypoint.sh's run_as (`su -p www-data`): the environment is kept."""
    if os.geteuid() == 0:
        return subprocess.run(args, user=WWW_DATA, group=WWW_DATA, extra_groups=[], cwd=HTML).returncode
    return subprocess.run(args, cwd=HTML).returncode


def start() -> None:
    """entrypoint.sh before `apache2-foreground`, in upstream's order."""
    installed = _version_of(HTML / "version.php")
    image_version = _version_of(SRC / "version.php")
    if installed > image_version:
        log("Can't start Nextcloud because the version of the data is higher than the docker image version")
        sys.exit(1)
    if image_version > installed:
        image, data = ".".join(map(str, image_version)), ".".join(map(str, installed))
        log(f"Initializing nextcloud {image} ...")
        if installed != (0, 0, 0, 0) and image_version[0] > installed[0] + 1:
            log(f"Can't start Nextcloud because upgrading from {data} to {image} is not supported.")
            log("It is only possible to upgrade one major version at a time. For example, if you want to upgrade "
                "from version 14 to 16, you will have to upgrade from version 14 to 15, then from 15 to 16.")
            sys.exit(1)
        for child in SRC.iterdir():
            if child.name not in EXCLUDED:
                _copy(child, HTML / child.name)
        for name in ("config", "data", "custom_apps", "themes"):
            if _empty(HTML / name):
                _copy(SRC / name, HTML / name)
        _copy(SRC / "version.php", HTML / "version.php")
        if installed == (0, 0, 0, 0):
            log("New nextcloud instance")
            _install()
        else:
            run_as_www_data("php", "/var/www/html/occ", "upgrade")
        log("Initializing finished")
    for src in sorted((SRC / "config").glob("*.php")):
        dst = HTML / "config" / src.name
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            log(f"Warning: /var/www/html/config/{src.name} differs from the latest version of this image "
                f"at /usr/src/nextcloud/config/{src.name}")


def install_variables_complete(env: os._Environ | dict) -> bool:
    """entrypoint.sh tests `${VAR+x}`: set, even if empty."""
    if "NEXTCLOUD_ADMIN_USER" not in env or "NEXTCLOUD_ADMIN_PASSWORD" not in env:
        return False
    return ("SQLITE_DATABASE" in env
            or all(k in env for k in ("MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_HOST"))
            or all(k in env for k in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_HOST")))


def _install() -> None:
    if not install_variables_complete(os.environ):
        log("Next step: Access your instance to finish the web-based installation!")
        return
    log("Starting nextcloud installation")
    pause = float(os.environ.get("AINI_DOUBLE_INSTALL_RETRY_SECONDS", "10"))
    # The credentials stay in the environment: upstream passes them in occ's argv, the
    # double reads them from there so that no secret is ever in a command line.
    for attempt in range(11):
        if run_as_www_data("php", "/var/www/html/occ", "maintenance:install", "-n") == 0:
            break
        log("Retrying install...")
        time.sleep(pause)
    else:
        log("Installing of nextcloud failed!")
        sys.exit(1)
    domains = os.environ.get("NEXTCLOUD_TRUSTED_DOMAINS")
    if domains is not None:
        log("Setting trusted domains…")
        for index, domain in enumerate(domains.split(), start=1):
            run_as_www_data("php", "/var/www/html/occ", "config:system:set", "trusted_domains", str(index),
                            f"--value={domain.strip()}")


# ----------------------------------------------------------------- configuration

def _config_php() -> Path:
    return HTML / "config" / "config.php"


def read_config() -> dict:
    """config.php as the double writes it: the values as JSON in a comment, then PHP."""
    try:
        text = _config_php().read_text()
    except (FileNotFoundError, PermissionError):
        return {}
    found = re.search(r"/\* aini-double (\{.*\}) \*/", text, re.S)
    return json.loads(found.group(1)) if found else {}


def _php(value: object, indent: str = "  ") -> str:
    if isinstance(value, dict):
        inner = "".join(f"{indent}{_php(k)} => {_php(v, indent + '  ')},\n" for k, v in value.items())
        return f"array (\n{inner}{indent[:-2]})"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_config(values: dict) -> None:
    """Config::writeData: the merged configuration, *.config.php values included."""
    merged = {**values, **extra_config()}
    body = json.dumps(merged, sort_keys=True).replace("*/", "*\\/")
    text = f"<?php\n/* aini-double {body} */\n$CONFIG = {_php(merged)};\n"
    path = _config_php()
    path.touch()
    path.write_text(text)
    os.chmod(path, 0o640)


_LINE = re.compile(
    r"^\s*(?:<\?php|//.*|if \(getenv\('(?P<guard>\w+)'\)\) \{|\$CONFIG = array\(|"
    r"'(?P<key>[\w.]+)' => (?:(?P<open>array\()|(?:getenv\('(?P<env>\w+)'\)|'(?P<lit>[^'\\]*)'),)|"
    r"\),|\);|\}|)\s*$")


def _read_extra(path: Path) -> dict:
    """The subset of PHP AINI's connector file uses; anything else is refused, so a
    rendered file the double cannot read fails loudly instead of being half-read."""
    text = path.read_text()
    if not text.startswith("<?php"):
        raise ValueError(f'Config file has leading content, please remove everything before "<?php" in {path.name}')
    result: dict = {}
    stack: list[dict] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"{path.name}:{number}: the Nextcloud double cannot read {line.strip()!r}")
        if match["guard"] and not os.environ.get(match["guard"]):
            return {}
        if line.strip() == "$CONFIG = array(":
            stack = [result]
        elif match["key"] and match["open"]:
            stack[-1][match["key"]] = {}
            stack.append(stack[-1][match["key"]])
        elif match["key"]:
            stack[-1][match["key"]] = (os.environ.get(match["env"]) or False) if match["env"] else match["lit"]
        elif line.strip() == "),":
            stack.pop()
    return result


def extra_config() -> dict:
    values: dict = {}
    for path in sorted((HTML / "config").glob("*.config.php")):
        if path.name not in IMAGE_CONFIGS:
            values.update(_read_extra(path))
    return values


def onlyoffice_settings() -> dict:
    return {**read_config(), **extra_config()}.get("onlyoffice") or {}


def _apps() -> dict:
    if APPS.exists():
        return json.loads(APPS.read_text())
    return {"enabled": {}, "disabled": {}}


# ------------------------------------------------------------------ php stand-in

def _check_config() -> None:
    """base.php checkConfig, then console.php's owner check."""
    path = _config_php()
    if not path.exists():
        try:
            path.touch()
        except OSError:
            pass
    if not os.access(path, os.W_OK):
        sys.stdout.write(CANNOT_WRITE)
        sys.exit(0)  # upstream's bare `exit;`
    if os.geteuid() != path.stat().st_uid:
        sys.exit("Console has to be executed with the user that owns the file config/config.php\n"
                 f"Current user id: {os.geteuid()}\nOwner id of config.php: {path.stat().st_uid}")


def php(args: list[str]) -> None:
    if args[:1] == ["-f"] and args[1:2] == [str(HTML / "cron.php")]:
        cron_php()
        return
    if args[:1] not in (["occ"], [str(HTML / "occ")]) or (args[:1] == ["occ"] and Path.cwd() != HTML):
        sys.exit("php (AINI test double): only `php occ ...` in /var/www/html and `php -f /var/www/html/cron.php`")
    _check_config()
    with OCC_LOG.open("a") as entry:
        entry.write(" ".join(args[1:]) + "\n")
    occ(args[1:])


def occ(args: list[str]) -> None:
    config = read_config()
    cmd, rest = (args[:1] or [""])[0], args[1:]
    if cmd == "maintenance:install":
        if config.get("installed"):
            sys.exit('Command "maintenance:install" is not defined.')
        env = os.environ
        write_config({
            "passwordsalt": secrets.token_urlsafe(22), "secret": secrets.token_urlsafe(36),
            "trusted_domains": {"0": "localhost"}, "datadirectory": str(HTML / "data"),
            "dbtype": "mysql", "version": ".".join(map(str, _version_of(SRC / "version.php"))),
            "dbname": env.get("MYSQL_DATABASE", ""), "dbhost": env.get("MYSQL_HOST", ""),
            "dbuser": env.get("MYSQL_USER", ""), "dbpassword": env.get("MYSQL_PASSWORD", ""),
            "installed": True, "instanceid": "oc" + secrets.token_hex(5),
        })
        print("Nextcloud was successfully installed")
        return
    if not config.get("installed"):
        sys.exit("Nextcloud is not installed - only a limited number of commands are available\n"
                 f'Command "{cmd}" is not defined.')
    if cmd == "config:system:set" and len(rest) >= 2:
        value = next((a.split("=", 1)[1] for a in rest if a.startswith("--value=")), "")
        keys = [a for a in rest if not a.startswith("--")]
        target = config
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
        write_config(config)
        print(f"System config value {' => '.join(keys)} set to string {value}")
    elif cmd == "maintenance:mode" and rest[:1] in (["--on"], ["--off"]):
        config["maintenance"] = rest[0] == "--on"
        write_config(config)
        print("Maintenance mode " + ("enabled" if config["maintenance"] else "disabled"))
    elif cmd in ("app:list", "app:install", "app:enable"):
        _app_command(cmd, rest)
    else:
        sys.exit(f"occ (AINI test double): {cmd} is not supported")


def _app_command(cmd: str, rest: list[str]) -> None:
    apps = _apps()
    if cmd == "app:list" and "--output=json" in rest:
        print(json.dumps({"enabled": apps["enabled"], "disabled": apps["disabled"]}))
        return
    if cmd == "app:install" and rest:
        if rest[0] in apps["enabled"] or rest[0] in apps["disabled"]:
            sys.exit(f"{rest[0]} already installed")
        apps["enabled"][rest[0]] = "9.11.0"
        print(f"{rest[0]} 9.11.0 installed\n{rest[0]} enabled")
    elif cmd == "app:enable" and rest:
        if rest[0] in apps["enabled"]:
            print(f"{rest[0]} already enabled")
        elif rest[0] in apps["disabled"]:
            apps["enabled"][rest[0]] = apps["disabled"].pop(rest[0])
            print(f"{rest[0]} enabled")
        else:
            sys.exit(f"App not found: {rest[0]}")
    else:
        sys.exit(f"occ (AINI test double): {cmd} {' '.join(rest)} is not supported")
    APPS.write_text(json.dumps(apps))


# ------------------------------------------------------------------------ cron

def crond() -> None:
    """/cron.sh: busybox crond running the www-data crontab (only `*/N * * * *` lines)."""
    jobs = []
    for line in CRONTAB.read_text().splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and re.fullmatch(r"\*/\d+", fields[0]) and fields[1:5] == ["*"] * 4:
            jobs.append((int(fields[0][2:]) * 60, fields[5]))
        elif line.strip() and not line.startswith("#"):
            sys.exit(f"crond (AINI test double): cannot schedule {line!r}")
    # A test may shorten the minutes; the schedule itself stays the image's.
    scale = float(os.environ.get("AINI_DOUBLE_CRON_SECONDS_PER_MINUTE", "60")) / 60
    log(f"crond: {len(jobs)} job(s) for www-data")
    due = [time.monotonic() + period * scale for period, _ in jobs]
    while True:
        time.sleep(1)
        for i, (period, command) in enumerate(jobs):
            if time.monotonic() >= due[i]:
                due[i] += period * scale
                code = subprocess.run(["/bin/sh", "-c", command], user=WWW_DATA, group=WWW_DATA,
                                      extra_groups=[], cwd="/var/www").returncode
                log(f"crond: USER www-data pid ... cmd {command} (exit {code})")


def cron_php() -> None:
    _check_config()
    config = read_config()
    if not config.get("installed"):
        return
    if config.get("maintenance"):
        print("Maintenance mode is enabled, skipping cron")
        return
    if "onlyoffice" in _apps()["enabled"]:
        editors_check()


def _request(url: str, body: dict | None = None, secret: str | None = None, accept: str | None = None) -> bytes:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if accept:
        headers["Accept"] = accept
    data = None
    if body is not None:
        import onlyoffice_double

        payload = dict(body)
        if secret:
            headers["Authorization"] = "Bearer " + onlyoffice_double.sign({"payload": body}, secret)
            payload["token"] = onlyoffice_double.sign(body, secret)
        data = json.dumps(payload).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=60) as r:
        return r.read()


def editors_check() -> None:
    """EditorsCheck.run -> DocumentService::checkDocServiceUrl; the outcome is kept in the
    apps state ("settings_error"), like the connector's settings error."""
    settings = onlyoffice_settings()
    internal = settings.get("DocumentServerInternalUrl") or settings.get("DocumentServerUrl")
    if not settings.get("DocumentServerUrl") or not internal:
        print("onlyoffice: Settings are empty")
        return
    storage = settings.get("StorageUrl") or ""
    file_url = f"{storage.rstrip('/')}/apps/onlyoffice/empty"
    if urlsplit(file_url).hostname in ("localhost", "127.0.0.1"):
        print("onlyoffice: Localhost is not alowed for cron editors availability check")
        return
    secret = settings.get("jwt_secret") or None
    error = ""
    try:
        if _request(internal + "healthcheck").decode() != "true":
            error = "Bad healthcheck status"
        elif (answer := json.loads(_request(internal + "coauthoring/CommandService.ashx",
                                            {"c": "version"}, secret))).get("error") != 0:
            error = f"Error occurred in the document service: ErrorCode = {answer.get('error')}"
        else:
            xml = _request(internal + "ConvertService.ashx", {
                "async": False, "url": file_url, "outputtype": "docx", "filetype": "docx",
                "title": "check.docx", "key": "check_" + secrets.token_hex(4)}, secret).decode()
            code = re.search(r"<Error>(-?\d+)</Error>", xml)
            converted = re.search(r"<FileUrl>([^<]+)</FileUrl>", xml)
            if code or not converted:
                error = f"Error occurred in the document service: ErrorCode = {code.group(1) if code else '?'}"
            else:
                _request(converted.group(1))
    except (OSError, ValueError) as exc:
        error = str(exc)
    apps = _apps()
    apps.setdefault("settings_error", {})["onlyoffice"] = error
    APPS.write_text(json.dumps(apps))
    print("onlyoffice: ONLYOFFICE server is not available: " + error if error
          else "onlyoffice: ONLYOFFICE server availability check is finished successfully")


# -------------------------------------------------------------------------- web

def status() -> dict:
    config = read_config()
    version = ".".join(map(str, _version_of(HTML / "version.php")))
    return {"installed": bool(config.get("installed")), "maintenance": bool(config.get("maintenance")),
            "needsDbUpgrade": False, "version": version, "versionstring": version.rsplit(".", 1)[0],
            "edition": "", "productname": "Nextcloud (AINI test double)", "extendedSupport": False,
            "aini_double": "nextcloud"}


def empty_file(headers) -> tuple[int, str, str | bytes]:
    import onlyoffice_double

    if not read_config().get("installed"):
        return 503, "text/plain; charset=utf-8", "not installed\n"
    secret = onlyoffice_settings().get("jwt_secret")
    if secret:
        value = headers.get(onlyoffice_settings().get("jwt_header") or "Authorization") or ""
        if not value.startswith("Bearer ") or onlyoffice_double.verify(value[7:], secret) is None:
            return 403, "application/json", json.dumps({"message": "Access denied"})
    return 200, "application/octet-stream", EMPTY_DOCX


def answer(method: str, path: str, headers, body: bytes) -> tuple[int, str, str | bytes] | None:
    """double.py's hook: None leaves the request to the generic routes."""
    if path == "/status.php":
        return 200, "application/json", json.dumps(status(), separators=(",", ":"))
    if path in ("/apps/onlyoffice/empty", "/index.php/apps/onlyoffice/empty") and method in ("GET", "HEAD"):
        return empty_file(headers)
    return None


if __name__ == "__main__":
    if sys.argv[1:2] == ["build"]:
        build()
    elif sys.argv[1:2] == ["php"]:
        php(sys.argv[2:])
    else:
        sys.exit("usage: nextcloud_double.py build | php ARGS...")
