"""Operations: Netdata (with a read-only Docker socket proxy) and Watchtower."""

from .model import ADMIN_LOGIN, Backup, HealthCheck, Route, ServiceSpec, Volume

NETDATA = ServiceSpec(
    name="netdata",
    group="netdata",
    title="Netdata",
    role="admin",
    image="docker.io/netdata/netdata",
    version="v2.11.1",
    description="Host and container metrics; port 19999 is never published.",
    upstream="https://learn.netdata.cloud/docs/netdata-agent/installation/docker",
    port=19999,
    health=HealthCheck(None, port=19999, path="/api/v1/info"),  # the image ships its own HEALTHCHECK
    mem_reservation=256,
    mem_limit=768,
    enabled=lambda config: config.services.netdata.enabled,
    env=lambda ctx: {
        "DOCKER_HOST": f"tcp://{ctx.host('socket-proxy')}:2375",
        "DO_NOT_TRACK": "1",
        "NETDATA_DISABLE_CLOUD": "1",
    },
    volumes=(
        Volume("netdata-config", "/etc/netdata"),
        Volume("netdata-lib", "/var/lib/netdata"),
        Volume("netdata-cache", "/var/cache/netdata"),
        Volume("/proc", "/host/proc", read_only=True),
        Volume("/sys", "/host/sys", read_only=True),
        Volume("/etc/os-release", "/host/etc/os-release", read_only=True),
        Volume("/etc/passwd", "/host/etc/passwd", read_only=True),
        Volume("/etc/group", "/host/etc/group", read_only=True),
    ),
    depends_on=("socket-proxy",),
    route=Route("netdata", 19999, admin=True),
    login=ADMIN_LOGIN,
    backup=Backup(notes="metrics history is not backed up"),
    extra={"pid": "host", "cap_add": ["SYS_PTRACE", "SYS_ADMIN"], "security_opt": ["apparmor:unconfined"]},
)

SOCKET_PROXY = ServiceSpec(
    name="socket-proxy",
    group="netdata",
    title="Docker socket proxy",
    role="helper",
    image="docker.io/tecnativa/docker-socket-proxy",
    version="v0.4.2",
    description="Read-only view of the Docker API for Netdata (POST refused).",
    upstream="https://github.com/Tecnativa/docker-socket-proxy",
    port=2375,
    health=HealthCheck(("CMD", "wget", "-qO-", "http://127.0.0.1:2375/_ping"), port=2375, path="/_ping"),
    mem_reservation=32,
    mem_limit=64,
    enabled=lambda config: config.services.netdata.enabled,
    env=lambda ctx: {"CONTAINERS": "1", "INFO": "1", "POST": "0"},
    volumes=(Volume("/var/run/docker.sock", "/var/run/docker.sock", read_only=True),),
)

WATCHTOWER = ServiceSpec(
    name="watchtower",
    group="watchtower",
    title="Watchtower",
    role="helper",
    image="docker.io/nickfedor/watchtower",
    version="1.22.3",  # the maintained fork; containrrr/watchtower is archived and fails on Docker 29
    description="Pulls new images for containers that opt in; databases are monitor-only.",
    upstream="https://watchtower.nickfedor.com/",
    port=None,
    health=HealthCheck(None),  # a scratch image: no shell to probe with; status shows its state
    mem_reservation=32,
    mem_limit=128,
    enabled=lambda config: config.services.watchtower.enabled,
    env=lambda ctx: {
        "WATCHTOWER_LABEL_ENABLE": "true",
        "WATCHTOWER_SCHEDULE": ctx.config.services.watchtower.schedule,
        "WATCHTOWER_CLEANUP": "true",
        "WATCHTOWER_INCLUDE_RESTARTING": "false",
        "TZ": "UTC",
    },
    # Watchtower must recreate containers: it needs the socket read-write. It faces no network.
    volumes=(Volume("/var/run/docker.sock", "/var/run/docker.sock"),),
)
