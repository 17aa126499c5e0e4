"""Operations: Netdata (with a read-only Docker socket proxy) and Watchtower."""

from .model import ADMIN_LOGIN, Backup, HealthCheck, Privileges, Route, ServiceSpec, Volume

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
    privileges=Privileges(default_caps=True, cap_add=("SYS_PTRACE",), new_privileges=True, pids=1024, why="starts as root and drops to netdata; its setuid plugins (apps.plugin, cgroup-network) read other processes; SYS_PTRACE for apps.plugin"),
    update="monitor",  # the platform: it changes only with a deploy (see README, New versions)
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
    route=Route("netdata", 19999, admin=True, private=True),  # its API has no authentication of its own
    login=ADMIN_LOGIN,
    backup=Backup(notes="metrics history is not backed up"),
    # Host PIDs and SYS_PTRACE: apps.plugin sees the host's processes. Not taken (UPSTREAM.md):
    # SYS_ADMIN (cgroup-network's setns for per-container interface charts, network-viewer's
    # host network) and AppArmor unconfined (ptrace reads of unconfined host processes).
    extra={"pid": "host"},
)

# What the Docker API answers through the proxy, and to whom (UPSTREAM.md, wollomatic): the
# container list, images and engine info for Netdata's docker collector, and
# `/containers/<name>/top` for Consul's "is it running" checks. Never `/containers/<id>/json`
# (every container's environment: every secret), `/archive` or `/export` (file contents),
# and no write method at all. The proxy anchors each pattern itself.
DOCKER_API_GET = r"/(v1\.[0-9]+/)?(_ping|version|info|containers/json|images/json|containers/[a-zA-Z0-9][a-zA-Z0-9_.-]*/top)"
DOCKER_API_HEAD = r"/(v1\.[0-9]+/)?_ping"
# Names, resolved by the proxy on each request: one that does not resolve (Consul off) matches nothing.
DOCKER_API_CLIENTS = ("aini-netdata", "aini-consul")


SOCKET_PROXY = ServiceSpec(
    name="socket-proxy",
    group="netdata",
    title="Docker socket proxy",
    role="helper",
    image="docker.io/wollomatic/socket-proxy",
    version="1.12.2",
    description="A read-only slice of the Docker API for Netdata and Consul's checks.",
    upstream="https://github.com/wollomatic/socket-proxy",
    port=2375,
    health=HealthCheck(("CMD", "/healthcheck"), port=2375, path="/_ping"),
    mem_reservation=16,
    mem_limit=64,
    privileges=Privileges(read_only=True, pids=128),
    update="monitor",  # the platform: it changes only with a deploy (see README, New versions)
    enabled=lambda config: config.services.netdata.enabled,
    command=(
        "-listenip=0.0.0.0",
        f"-allowfrom={','.join(DOCKER_API_CLIENTS)}",
        f"-allowGET={DOCKER_API_GET}",
        f"-allowHEAD={DOCKER_API_HEAD}",
        "-allowhealthcheck",
        "-shutdowngracetime=5",
    ),
    volumes=(Volume("/var/run/docker.sock", "/var/run/docker.sock", read_only=True),),
    # The image's user (65534) cannot open the root:docker 0660 socket, and the docker group's
    # ID differs per host; root with every capability dropped opens it by its owner bits only.
    extra={"user": "0:0"},
)

WATCHTOWER = ServiceSpec(
    name="watchtower",
    group="watchtower",
    title="Watchtower",
    role="helper",
    image="docker.io/nickfedor/watchtower",
    version="1.22.3",  # the maintained fork; containrrr/watchtower is archived and fails on Docker 29
    description="Restarts an application on a re-pushed image of its pinned tag; everything with data, and the platform, is monitor-only.",
    upstream="https://watchtower.nickfedor.com/",
    port=None,
    health=HealthCheck(None),  # a scratch image: no shell to probe with; status shows its state
    mem_reservation=32,
    mem_limit=128,
    privileges=Privileges(pids=128, why="writable root not verified (scratch image, root for the socket: no capability needed)"),
    update="monitor",  # the platform: it changes only with a deploy (see README, New versions)
    enabled=lambda config: config.services.watchtower.enabled,
    env=lambda ctx: {
        "WATCHTOWER_LABEL_ENABLE": "true",
        "WATCHTOWER_SCHEDULE": ctx.config.services.watchtower.schedule,
        # Off: an image is never removed behind AINI's back (the one a re-pushed tag replaced
        # is what that container ran before: a way back).
        "WATCHTOWER_CLEANUP": "false",
        "WATCHTOWER_INCLUDE_RESTARTING": "false",
        "TZ": "UTC",
    },
    # Watchtower must recreate containers: it needs the socket read-write. It faces no network.
    volumes=(Volume("/var/run/docker.sock", "/var/run/docker.sock"),),
)
