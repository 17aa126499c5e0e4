"""Nextcloud (Apache image) with MariaDB, Redis and its cron container; OnlyOffice beside it."""

from .networks import TRAEFIK_IP
from .model import (
    DROPS_TO_USER,
    Backup,
    Context,
    Files,
    HealthCheck,
    Login,
    PostDeploy,
    Privileges,
    Ref,
    Route,
    Secret,
    ServiceSpec,
    Upgrade,
    UserSecret,
    Volume,
)

ONLYOFFICE_JWT = Secret("onlyoffice_jwt_secret", 48, "alnum", description="shared by OnlyOffice and Nextcloud")
HTML = Volume("nextcloud-html", "/var/www/html")
# nextcloud/docker's entrypoint.sh copies /usr/src/nextcloud/config/*.php into
# /var/www/html/config only while that directory is missing or empty (a fresh install),
# with the ownership www-data needs. A file mounted straight into /var/www/html/config
# makes the runtime create that directory root-owned first: nothing is copied, www-data
# cannot write config.php and the install never completes (nextcloud/docker#1158).
IMAGE_CONFIG_DIR = "/usr/src/nextcloud/config"


def _apache_body_limit(upload_limit: str) -> str:
    """Bytes for the image's `LimitRequestBody ${APACHE_BODY_LIMIT}` (default 1 GiB), from
    upload_limit in PHP's 1024-based shorthand, so Apache does not refuse what PHP accepts."""
    return str(int(upload_limit[:-1]) * 1024 ** ("KMG".index(upload_limit[-1]) + 1))


def _nextcloud_env(ctx: Context) -> dict:
    options = ctx.config.services.nextcloud
    env = {
        "MYSQL_HOST": ctx.host("mariadb"),
        "MYSQL_DATABASE": "nextcloud",
        "MYSQL_USER": "nextcloud",
        "MYSQL_PASSWORD": Ref("nextcloud_db_password"),
        "NEXTCLOUD_ADMIN_USER": ctx.config.admin.user,
        "NEXTCLOUD_ADMIN_PASSWORD": Ref("nextcloud_admin_password"),
        "NEXTCLOUD_TRUSTED_DOMAINS": ctx.fqdn("nextcloud"),
        # Only Traefik's fixed address may set X-Forwarded-For.
        "TRUSTED_PROXIES": f"{TRAEFIK_IP}/32",
        "OVERWRITEPROTOCOL": "https",
        "OVERWRITEHOST": ctx.fqdn("nextcloud"),
        "OVERWRITECLIURL": ctx.url("nextcloud"),
        "REDIS_HOST": ctx.host("redis"),
        "PHP_MEMORY_LIMIT": "1024M",
        "PHP_UPLOAD_LIMIT": options.upload_limit,
        "APACHE_BODY_LIMIT": _apache_body_limit(options.upload_limit),
        "APACHE_DISABLE_REWRITE_IP": "1",
    }
    if options.s3:
        s3 = options.s3
        env |= {
            "OBJECTSTORE_S3_BUCKET": s3.bucket,
            "OBJECTSTORE_S3_HOST": s3.host,
            "OBJECTSTORE_S3_REGION": s3.region,
            "OBJECTSTORE_S3_PORT": str(s3.port),
            "OBJECTSTORE_S3_SSL": str(s3.ssl).lower(),
            "OBJECTSTORE_S3_USEPATH_STYLE": str(s3.path_style).lower(),
            "OBJECTSTORE_S3_AUTOCREATE": str(s3.autocreate).lower(),
            "OBJECTSTORE_S3_KEY": Ref("nextcloud_s3_key"),
            "OBJECTSTORE_S3_SECRET": Ref("nextcloud_s3_secret"),
        }
    if ctx.on("onlyoffice"):
        # Read by onlyoffice.config.php (never in argv). Nextcloud writes its merged
        # configuration, these values included, into config.php whenever it saves a
        # setting: the README says so.
        env |= {
            "AINI_ONLYOFFICE_URL": ctx.url("onlyoffice") + "/",
            "AINI_ONLYOFFICE_INTERNAL_URL": f"http://{ctx.host('onlyoffice')}/",
            "AINI_NEXTCLOUD_INTERNAL_URL": f"http://{ctx.host('nextcloud')}/",
            "AINI_ONLYOFFICE_JWT_SECRET": Ref(ONLYOFFICE_JWT.name),
        }
    return env


# Read only by the entrypoint (install, Apache) or autoconfig.php during the install: the
# cron container runs no entrypoint, so it gets everything else and none of these secrets.
_ENTRYPOINT_ONLY = frozenset({
    "NEXTCLOUD_ADMIN_USER", "NEXTCLOUD_ADMIN_PASSWORD", "NEXTCLOUD_TRUSTED_DOMAINS",
    "MYSQL_HOST", "MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD",
    "APACHE_BODY_LIMIT", "APACHE_DISABLE_REWRITE_IP", "PHP_UPLOAD_LIMIT",
})


def _cron_env(ctx: Context) -> dict:
    return {k: v for k, v in _nextcloud_env(ctx).items() if k not in _ENTRYPOINT_ONLY}


ONLYOFFICE_CONFIG = "onlyoffice.config.php"


def _onlyoffice_config(ctx: Context) -> dict[str, str]:
    """The OnlyOffice connector reads its settings from the system config's `onlyoffice`
    array; Nextcloud merges every config/*.config.php into it. Values come from the
    container's environment (the 0600 env file), so this file holds no secret. The
    entrypoint copies it into the html volume on the first install only, hence the guard:
    once OnlyOffice is disabled (no AINI_ONLYOFFICE_URL), the copy adds nothing."""
    if not ctx.on("onlyoffice"):
        return {}
    return {ONLYOFFICE_CONFIG: """<?php
// Written by AINI: the OnlyOffice connector's settings (edit aini.yml, not this file).
if (getenv('AINI_ONLYOFFICE_URL')) {
  $CONFIG = array(
    'onlyoffice' => array(
      'DocumentServerUrl' => getenv('AINI_ONLYOFFICE_URL'),
      'DocumentServerInternalUrl' => getenv('AINI_ONLYOFFICE_INTERNAL_URL'),
      'StorageUrl' => getenv('AINI_NEXTCLOUD_INTERNAL_URL'),
      'jwt_secret' => getenv('AINI_ONLYOFFICE_JWT_SECRET'),
      'jwt_header' => 'Authorization',
    ),
  );
}
"""}


def _onlyoffice_mounts(ctx: Context) -> tuple[Volume, ...]:
    if not ctx.on("onlyoffice"):
        return ()
    return (Volume(f"./{ONLYOFFICE_CONFIG}", f"{IMAGE_CONFIG_DIR}/{ONLYOFFICE_CONFIG}", read_only=True),)


# Installs the connector from the app store once, then only enables it: safe to repeat.
ENABLE_ONLYOFFICE = (
    "php occ app:list --output=json | grep -q '\"onlyoffice\"' || php occ app:install onlyoffice; "
    "php occ app:enable onlyoffice"
)


NEXTCLOUD = ServiceSpec(
    name="nextcloud",
    group="nextcloud",
    title="Nextcloud",
    role="app",
    image="docker.io/library/nextcloud",
    version="34.0.4-apache",
    description="Files, calendars and contacts; installed unattended.",
    upstream="https://github.com/nextcloud/docker",
    port=80,
    # status.php answers 200 with "installed":false when the install did not happen (the
    # entrypoint still starts Apache): healthy means installed.
    health=HealthCheck(
        ("CMD-SHELL", "curl -fsS http://127.0.0.1/status.php | grep -q '\"installed\":true'"),
        port=80, path="/status.php", start_period="300s",
    ),
    mem_reservation=512,
    mem_limit=2048,
    privileges=Privileges(default_caps=True, pids=1024, why="Apache starts as root, binds 80 and runs its workers as www-data; the entrypoint copies and chowns the code; not narrowed yet"),
    enabled=lambda config: config.services.nextcloud.enabled,
    env=_nextcloud_env,
    secrets=(Secret("nextcloud_admin_password", 24, "alnum", set_at_init=True), ONLYOFFICE_JWT),
    user_secrets=(
        UserSecret("nextcloud_s3_key", description="S3 access key (services.nextcloud.s3)"),
        UserSecret("nextcloud_s3_secret", description="S3 secret key (services.nextcloud.s3)"),
    ),
    volumes=(HTML,),
    files=Files(_onlyoffice_config, mounts=_onlyoffice_mounts),
    depends_on=("mariadb", "redis"),
    route=Route("cloud", 80, middlewares=("nextcloud-dav",)),
    login=Login(lambda config: config.admin.user, "nextcloud_admin_password"),
    post_deploy=lambda ctx: (
        (PostDeploy(ENABLE_ONLYOFFICE, "www-data", "enable the OnlyOffice connector app", "/var/www/html"),)
        if ctx.on("onlyoffice") else ()
    ),
    # Maintenance mode around the copy: no client writes while files and database are saved.
    upgrade=Upgrade(one_major_at_a_time=True, major="the image's entrypoint runs occ upgrade on start",
                    source="nextcloud/docker entrypoint: \"It is only possible to upgrade one major version at a "
                           "time\", and data of a newer version stops it"),
    backup=Backup(volumes=("nextcloud-html",), user="www-data",
                  before="cd /var/www/html && php occ maintenance:mode --on",
                  after="cd /var/www/html && php occ maintenance:mode --off",
                  notes="maintenance mode on around the copy"),
)

NEXTCLOUD_CRON = ServiceSpec(
    name="nextcloud-cron",
    group="nextcloud",
    title="Nextcloud cron",
    role="worker",
    image=NEXTCLOUD.image,
    version=NEXTCLOUD.version,
    description="Nextcloud background jobs every 5 minutes.",
    upstream="https://github.com/nextcloud/docker#using-the-apache-image",
    port=None,
    health=HealthCheck(("CMD-SHELL", "grep -q crond /proc/1/cmdline")),
    mem_reservation=64,
    mem_limit=512,
    privileges=Privileges(default_caps=True, why="busybox crond as root runs cron.php as www-data; not narrowed yet"),
    enabled=lambda config: config.services.nextcloud.enabled,
    # cron.php reads the same config/*.config.php files, whose values come from getenv():
    # without the web container's environment it would see no Redis, S3 or OnlyOffice.
    env=_cron_env,
    volumes=(HTML,),
    depends_on=("nextcloud",),
    entrypoint=("/cron.sh",),
    upgrade=NEXTCLOUD.upgrade,  # the same image, on the same data
)

MARIADB = ServiceSpec(
    name="mariadb",
    group="nextcloud",
    title="MariaDB",
    role="database",
    image="docker.io/library/mariadb",
    version="11.8.9",
    description="Nextcloud's database.",
    upstream="https://mariadb.com/kb/en/mariadb-server-docker-official-image-environment-variables/",
    port=3306,
    health=HealthCheck(("CMD", "healthcheck.sh", "--connect", "--innodb_initialized"), port=3306),
    mem_reservation=384,
    mem_limit=1024,
    privileges=Privileges(cap_add=DROPS_TO_USER, why="the entrypoint chowns the data directory to mysql and gosus to it"),
    enabled=lambda config: config.services.nextcloud.enabled,
    env=lambda ctx: {
        "MARIADB_ROOT_PASSWORD": Ref("mariadb_root_password"),
        "MARIADB_DATABASE": "nextcloud",
        "MARIADB_USER": "nextcloud",
        "MARIADB_PASSWORD": Ref("nextcloud_db_password"),
        "MARIADB_AUTO_UPGRADE": "1",
    },
    secrets=(
        Secret("mariadb_root_password", 32, "alnum", set_at_init=True),
        Secret("nextcloud_db_password", 32, "alnum", set_at_init=True),
    ),
    volumes=(Volume("nextcloud-mariadb", "/var/lib/mysql"),),
    command=(
        "--transaction-isolation=READ-COMMITTED",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
    ),
    # MYSQL_PWD is read by the client from the environment: no password in argv.
    backup=Backup(
        dump='MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb-dump -uroot --single-transaction --add-drop-database '
        '--databases nextcloud',
        dump_file="nextcloud.sql",
        restore='MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot',
        verify='n=$(MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -N -e "SELECT COUNT(*) FROM '
        'information_schema.tables WHERE table_schema = \'nextcloud\'") && echo "$n tables in nextcloud" && '
        '[ "$n" -gt 0 ]',
    ),
    upgrade=Upgrade(series=2, downgrade="within-major",
                    major="the image's mariadb-upgrade on start (MARIADB_AUTO_UPGRADE), its system tables saved first",
                    source="mariadb-docker entrypoint; MariaDB's docs: downgrading between major versions is not "
                           "supported (a backup made before is the only reliable way back)"),
    update="monitor",
)

REDIS = ServiceSpec(
    name="redis",
    group="nextcloud",
    title="Redis",
    role="cache",
    image="docker.io/library/redis",
    version="7.4.6-alpine",
    description="Nextcloud's file locking and memory cache (reachable only from Nextcloud's network).",
    upstream="https://redis.io/docs/",
    port=6379,
    health=HealthCheck(("CMD", "redis-cli", "ping"), port=6379),
    mem_reservation=64,
    mem_limit=256,
    privileges=Privileges(cap_add=DROPS_TO_USER, why="the entrypoint chowns /data to redis and drops to it"),
    enabled=lambda config: config.services.nextcloud.enabled,
    backup=Backup(notes="a cache; not backed up"),
    update="monitor",
)

ONLYOFFICE = ServiceSpec(
    name="onlyoffice",
    group="onlyoffice",
    title="OnlyOffice Docs",
    role="app",
    image="docker.io/onlyoffice/documentserver",
    version="9.4.0.1",
    description="Edit office documents in Nextcloud (about 4 GB of memory by upstream guidance).",
    upstream="https://helpcenter.onlyoffice.com/installation/docs-community-install-docker.aspx",
    port=80,
    health=HealthCheck(
        # /healthcheck answers 200 with `true` or `false` (Docker-DocumentServer README): the body decides.
        ("CMD-SHELL", "curl -fsS http://127.0.0.1/healthcheck | grep -qx true"), port=80, path="/healthcheck",
        start_period="180s",
    ),
    mem_reservation=2048,
    mem_limit=4096,
    privileges=Privileges(default_caps=True, new_privileges=True, pids=2048, why="a whole system in one image (supervisord, nginx, PostgreSQL, RabbitMQ, Node workers) switching users with setuid tools"),
    enabled=lambda config: config.services.onlyoffice.enabled and config.services.nextcloud.enabled,
    env=lambda ctx: {
        "JWT_ENABLED": "true",
        "JWT_SECRET": Ref(ONLYOFFICE_JWT.name),
        "JWT_HEADER": "Authorization",
        # Its request filter refuses private addresses by default (Docker-DocumentServer
        # README), and it fetches and saves documents at http://aini-nextcloud/ on the
        # proxy network. Every such request needs the shared JWT secret.
        "ALLOW_PRIVATE_IP_ADDRESS": "true",
    },
    secrets=(ONLYOFFICE_JWT,),
    volumes=(
        Volume("onlyoffice-data", "/var/www/onlyoffice/Data"),
        Volume("onlyoffice-lib", "/var/lib/onlyoffice"),
        Volume("onlyoffice-logs", "/var/log/onlyoffice"),
    ),
    route=Route("office", 80, framed_by="nextcloud"),  # the connector opens the editor in Nextcloud's page
    backup=Backup(notes="documents live in Nextcloud; the cache is not backed up"),
)
