"""n8n workflow automation: SQLite by default, PostgreSQL as an option (n8n 2.x has no MariaDB)."""

from .model import (
    DROPS_TO_USER,
    Backup,
    Context,
    HealthCheck,
    Login,
    Privileges,
    Ref,
    Route,
    Secret,
    ServiceSpec,
    Upgrade,
    Volume,
)


def _n8n_env(ctx: Context) -> dict:
    options = ctx.config.services.n8n
    url = ctx.url("n8n") + "/"
    env = {
        "N8N_HOST": ctx.fqdn("n8n"),
        "N8N_PORT": "5678",
        "N8N_PROTOCOL": "https",
        "N8N_PROXY_HOPS": "1",
        "N8N_WEBHOOK_URL": url,  # WEBHOOK_URL is deprecated since n8n 2.35
        "N8N_EDITOR_BASE_URL": url,
        "GENERIC_TIMEZONE": options.timezone,
        "TZ": options.timezone,
        "N8N_ENCRYPTION_KEY": Ref("n8n_encryption_key"),
        "N8N_DIAGNOSTICS_ENABLED": "false",
        # Node sizes its heap from the cgroup limit, and on cgroup v1 hosts from the soft
        # limit (mem_reservation): n8n then dies "out of memory" within seconds (seen in e2e).
        "NODE_OPTIONS": "--max-old-space-size=1024",
        "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "true",
        # The owner exists from the first start (n8n >= 2.17 applies these on every start): no
        # "Set up owner account" form for whoever reaches the URL first. Its login is aini.yml's
        # email; its password is AINI's secret (aini secrets get n8n owner_password).
        "N8N_INSTANCE_OWNER_MANAGED_BY_ENV": "true",
        "N8N_INSTANCE_OWNER_EMAIL": ctx.config.email,
        "N8N_INSTANCE_OWNER_FIRST_NAME": "AINI",
        "N8N_INSTANCE_OWNER_LAST_NAME": "Owner",
        "N8N_INSTANCE_OWNER_PASSWORD_HASH": Ref("n8n_owner_password", hashed=True),
    }
    if options.database == "postgres":
        env |= {
            "DB_TYPE": "postgresdb",
            "DB_POSTGRESDB_HOST": ctx.host("n8n-postgres"),
            "DB_POSTGRESDB_PORT": "5432",
            "DB_POSTGRESDB_DATABASE": "n8n",
            "DB_POSTGRESDB_USER": "n8n",
            "DB_POSTGRESDB_PASSWORD": Ref("n8n_postgres_password"),
        }
    return env


N8N = ServiceSpec(
    name="n8n",
    group="n8n",
    title="n8n",
    role="app",
    image="docker.n8n.io/n8nio/n8n",
    version="2.40.7",
    description="Workflow automation.",
    upstream="https://docs.n8n.io/hosting/",
    port=5678,
    # /healthz answers as soon as the process listens; /healthz/readiness only once the
    # database is connected and migrated, i.e. the instance takes traffic.
    health=HealthCheck(("CMD", "wget", "-qO-", "http://127.0.0.1:5678/healthz/readiness"), port=5678,
                       path="/healthz/readiness"),
    mem_reservation=384,
    mem_limit=1536,
    privileges=Privileges(why="writable root not verified (it runs as node: no capability needed)"),
    enabled=lambda config: config.services.n8n.enabled,
    env=_n8n_env,
    # Credentials stored in n8n are encrypted with this key: never rotate it, always back it up.
    secrets=(Secret("n8n_encryption_key", 48, "alnum", rotatable=False),
             Secret("n8n_owner_password", 24, "alnum", description="n8n's owner (login: aini.yml's email)")),
    volumes=(Volume("n8n-data", "/home/node/.n8n"),),
    depends_on=("n8n-postgres",),
    route=Route("n8n", 5678),
    login=Login(lambda config: config.email, "n8n_owner_password"),
    # With SQLite the database is a file n8n writes while it runs: stopped, the copy is consistent.
    backup=Backup(volumes=("n8n-data",), stop=True,
                  notes="settings, the encryption key and (SQLite) the database; stopped for the copy"),
)

N8N_POSTGRES = ServiceSpec(
    name="n8n-postgres",
    group="n8n",
    title="PostgreSQL (n8n)",
    role="database",
    image="docker.io/library/postgres",
    version="17.11-bookworm",
    description="n8n's database when services.n8n.database is 'postgres'.",
    upstream="https://www.postgresql.org/docs/17/",
    port=5432,
    health=HealthCheck(("CMD", "pg_isready", "-U", "n8n", "-d", "n8n"), port=5432),
    mem_reservation=256,
    mem_limit=768,
    privileges=Privileges(cap_add=DROPS_TO_USER, why="the entrypoint chowns PGDATA and the socket directory to postgres and drops to it"),
    enabled=lambda config: config.services.n8n.enabled and config.services.n8n.database == "postgres",
    env=lambda ctx: {"POSTGRES_USER": "n8n", "POSTGRES_DB": "n8n", "POSTGRES_PASSWORD": Ref("n8n_postgres_password")},
    secrets=(Secret("n8n_postgres_password", 32, "alnum", set_at_init=True),),
    volumes=(Volume("n8n-postgres", "/var/lib/postgresql/data"),),
    # The local socket trusts local users in the upstream image (initdb --auth-local=trust):
    # no password needed inside the container.
    backup=Backup(dump="pg_dump -U n8n --format=custom n8n", dump_file="n8n.pgdump",
                  restore="pg_restore -U n8n -d n8n --clean --if-exists --no-owner --single-transaction",
                  # n8n's own table: its workflows (n8n creates it at first start, before any backup)
                  verify='n=$(psql -U n8n -d n8n -tAc "SELECT COUNT(*) FROM workflow_entity") && '
                         'echo "$n workflows"',
                  # TCP: the image's first start runs a temporary server on the socket only
                  # (docker-entrypoint.sh, listen_addresses=''), which pg_isready alone accepts.
                  ready="pg_isready -h 127.0.0.1 -U n8n -d n8n"),
    upgrade=Upgrade(downgrade="within-major", by_dump=True,
                    major="dump, new cluster, restore (the old cluster kept until the next backup)",
                    source="PostgreSQL refuses a data directory of another major: "
                           "\"database files are incompatible with server\""),
    update="monitor",
)
