"""LibreChat with MongoDB, and Meilisearch when conversation search is on."""

from .model import (
    DROPS_TO_USER,
    Backup,
    Context,
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

MEILI_KEY = Secret("meili_master_key", 40, "alnum", description="Meilisearch master key, shared with LibreChat")


def _librechat_env(ctx: Context) -> dict:
    options = ctx.config.services.librechat
    search = ctx.on("meilisearch")
    env = {
        "HOST": "0.0.0.0",
        "PORT": "3080",
        "DOMAIN_CLIENT": ctx.url("librechat"),
        "DOMAIN_SERVER": ctx.url("librechat"),
        "MONGO_URI": Ref("mongodb_password", f"mongodb://librechat:{{}}@{ctx.host('mongodb')}:27017/LibreChat?authSource=admin"),
        "CREDS_KEY": Ref("librechat_creds_key"),
        "CREDS_IV": Ref("librechat_creds_iv"),
        "JWT_SECRET": Ref("librechat_jwt_secret"),
        "JWT_REFRESH_SECRET": Ref("librechat_jwt_refresh_secret"),
        "ALLOW_REGISTRATION": str(options.registration).lower(),
        "ALLOW_SOCIAL_LOGIN": "false",
        "SEARCH": str(search).lower(),
        "NO_INDEX": "true",
        "OPENAI_API_KEY": Ref("openai_api_key", optional=True),
        "ANTHROPIC_API_KEY": Ref("anthropic_api_key", optional=True),
        # For CREATE_ADMIN. The container holds JWT_SECRET, which signs any session: its first
        # user's password there exposes nothing more.
        "AINI_ADMIN_EMAIL": ctx.config.email,
        "AINI_ADMIN_PASSWORD": Ref("librechat_admin_password"),
    }
    if search:
        env |= {"MEILI_HOST": f"http://{ctx.host('meilisearch')}:7700", "MEILI_MASTER_KEY": Ref(MEILI_KEY.name)}
    return env


# With registration off (the default) nobody could log in: AINI makes the first user, whom
# LibreChat makes ADMIN. config/create-user.js asks for what argv lacks, so the password goes
# in on stdin, never argv; it refuses an existing email or username, which means done.
CREATE_ADMIN = (
    'out=$(printf "%s\\n" "$AINI_ADMIN_PASSWORD" | node config/create-user.js "$AINI_ADMIN_EMAIL" Admin admin '
    '--email-verified=true 2>&1) && exit 0; '
    'case "$out" in *"already exists"*) exit 0 ;; esac; printf "%s\\n" "$out"; exit 1'
)


LIBRECHAT = ServiceSpec(
    name="librechat",
    group="librechat",
    title="LibreChat",
    role="app",
    image="registry.librechat.ai/danny-avila/librechat",
    version="v0.8.8",
    description="AI chat with your own API keys (OpenAI, Anthropic, ...).",
    upstream="https://www.librechat.ai/docs",
    port=3080,
    health=HealthCheck(("CMD", "wget", "-qO-", "http://127.0.0.1:3080/health"), port=3080, path="/health"),
    mem_reservation=384,
    mem_limit=1536,
    privileges=Privileges(why="writable root not verified with the upstream image (it runs as node: no capability needed)"),
    enabled=lambda config: config.services.librechat.enabled,
    env=_librechat_env,
    secrets=(
        # Stored user API keys are encrypted with CREDS_KEY/IV: a new value makes them unreadable.
        Secret("librechat_creds_key", 64, "hex", rotatable=False, description="32 bytes, hex"),
        Secret("librechat_creds_iv", 32, "hex", rotatable=False, description="16 bytes, hex"),
        Secret("librechat_jwt_secret", 64, "hex"),
        Secret("librechat_jwt_refresh_secret", 64, "hex"),
        Secret("librechat_admin_password", 24, "alnum", description="LibreChat's first user, an admin (login: aini.yml's email)"),
        MEILI_KEY,
    ),
    user_secrets=(
        UserSecret("openai_api_key", description="OPENAI_API_KEY"),
        UserSecret("anthropic_api_key", description="ANTHROPIC_API_KEY"),
    ),
    volumes=(
        Volume("librechat-images", "/app/client/public/images"),
        Volume("librechat-uploads", "/app/uploads"),
        # LibreChat logs to <cwd>/logs = /app/logs (data-schemas getLogDirectory: /app does not
        # contain "LibreChat"); the image creates /app/logs owned by node, so the volume is too.
        Volume("librechat-logs", "/app/logs"),
        Volume("librechat-data", "/app/data"),
    ),
    depends_on=("mongodb", "meilisearch"),
    route=Route("chat", 3080),
    login=Login(lambda config: config.email, "librechat_admin_password"),
    post_deploy=lambda ctx: (PostDeploy(CREATE_ADMIN, "node", "create the first user (admin)", "/app"),),
    backup=Backup(volumes=("librechat-images", "librechat-uploads", "librechat-data")),
)

def _mongo_tool(command: str) -> str:
    """A MongoDB tool as root of the admin database; the password goes through a private file
    the tool reads with --config, not argv (argv shows in the host's process list)."""
    return ('umask 077; f=$(mktemp); printf \'password: "%s"\\n\' "$MONGO_INITDB_ROOT_PASSWORD" > "$f"; '
            f'{command} -u "$MONGO_INITDB_ROOT_USERNAME" --authenticationDatabase admin --config "$f"; '
            'rc=$?; rm -f "$f"; exit $rc')


MONGODB = ServiceSpec(
    name="mongodb",
    group="librechat",
    title="MongoDB",
    role="database",
    image="docker.io/library/mongo",
    version="8.0.30",
    description="LibreChat's database.",
    upstream="https://www.mongodb.com/docs/manual/",
    port=27017,
    health=HealthCheck(
        ("CMD", "mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"), port=27017, start_period="60s"
    ),
    mem_reservation=384,
    mem_limit=1536,
    privileges=Privileges(cap_add=DROPS_TO_USER, pids=1024, why="the entrypoint chowns /data/db to mongodb and gosus to it; a thread per connection"),
    enabled=lambda config: config.services.librechat.enabled,
    env=lambda ctx: {"MONGO_INITDB_ROOT_USERNAME": "librechat", "MONGO_INITDB_ROOT_PASSWORD": Ref("mongodb_password")},
    secrets=(Secret("mongodb_password", 32, "alnum", set_at_init=True),),
    volumes=(Volume("librechat-mongodb", "/data/db"),),
    backup=Backup(
        dump=_mongo_tool("mongodump --quiet --archive --gzip"),
        dump_file="mongodb.archive.gz",
        restore=_mongo_tool("mongorestore --quiet --archive --gzip --drop"),
    ),
    upgrade=Upgrade(series=2, one_major_at_a_time=True, downgrade="within-major", automatic=False,
                    major="featureCompatibilityVersion raised once the new binary is healthy",
                    source="MongoDB's upgrade guide: one release series at a time, from a "
                           "featureCompatibilityVersion of the one before"),
    update="monitor",
)

MEILISEARCH = ServiceSpec(
    name="meilisearch",
    group="librechat",
    title="Meilisearch",
    role="search",
    image="docker.io/getmeili/meilisearch",
    version="v1.35.1",  # the release LibreChat's own compose file pins
    description="Conversation search for LibreChat (optional).",
    upstream="https://www.meilisearch.com/docs",
    port=7700,
    health=HealthCheck(("CMD", "curl", "-fsS", "http://127.0.0.1:7700/health"), port=7700, path="/health"),
    mem_reservation=256,
    mem_limit=1024,
    privileges=Privileges(why="writable root not verified"),
    enabled=lambda config: config.services.librechat.enabled and config.services.librechat.search,
    env=lambda ctx: {
        "MEILI_MASTER_KEY": Ref(MEILI_KEY.name),
        "MEILI_ENV": "production",
        "MEILI_NO_ANALYTICS": "true",
    },
    secrets=(MEILI_KEY,),
    volumes=(Volume("librechat-meili", "/meili_data"),),
    backup=Backup(notes="an index rebuilt from MongoDB; not backed up"),
    # Its data directory is tied to the version: an unplanned upgrade leaves it unreadable.
    update="monitor",
)
