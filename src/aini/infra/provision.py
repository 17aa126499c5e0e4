"""`aini up`, cloud half: provision the Hetzner Cloud server with the `provision.yml`
playbook (the real `hetzner.hcloud` modules), then hand its address to host configuration.

The decisions (names, labels, firewall sources, cloud-init) are pure functions of the
config; the API is read only to check prices/availability and to refuse adopting a
resource with AINI's name that AINI did not create.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import hetzner as cloud
from ..errors import AiniError, InputError
from ..yamltext import dump
from .ansible import Progress, run_playbook

if TYPE_CHECKING:
    from hcloud import Client

    from ..config import AiniConfig, HetznerTarget

PLAYBOOK = "provision.yml"
# This Python runs the playbook too (ansible-playbook beside it): no template, as every value
# AINI hands Ansible is marked unsafe for templating.
LOCAL_INVENTORY = {"all": {"hosts": {"localhost": {
    "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}
FIREWALL_PLAYBOOK = "firewall.yml"
SSH_RULE = "ssh"
# An SSH port sshd may still listen on (a server before its port moved): open until
# `aini up` has seen sshd answer on target.ssh_port, then closed by close_former_ssh_ports.
FORMER_SSH_RULE = "ssh (former port, closed once sshd has moved)"
ANYWHERE = ["0.0.0.0/0", "::/0"]


@dataclass(frozen=True)
class Provisioned:
    ipv4: str
    changed: int
    elapsed: float
    plan: cloud.CloudPlan
    former_ssh_ports: tuple[int, ...] = ()  # still open in the Cloud Firewall besides target.ssh_port


def public_key_files(target: HetznerTarget, project_dir: Path) -> list[Path]:
    return [(project_dir / Path(p).expanduser()).resolve() for p in target.ssh_keys]


def private_key_of(target: HetznerTarget, project_dir: Path) -> Path:
    """The operator's private key: the first public key file without `.pub`."""
    public = public_key_files(target, project_dir)[0]
    if public.suffix != ".pub":
        raise InputError(f"target.ssh_keys: {public} should be a public key file ending in .pub")
    return public.with_suffix("")


def read_public_keys(target: HetznerTarget, project_dir: Path) -> list[str]:
    keys = []
    for path in public_key_files(target, project_dir):
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise InputError(f"target.ssh_keys: cannot read {path} ({exc.strerror}); create a key with ssh-keygen -t ed25519") from None
        if not text.startswith(("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-")) or "PRIVATE KEY" in text:
            raise InputError(f"target.ssh_keys: {path} is not an OpenSSH public key")
        keys.append(text.splitlines()[0])
    return keys


def sshd_port_conf(port: int) -> str:
    """The `base` role's 00-aini-port.conf once sshd has settled on `port` (same bytes, so
    the role finds nothing to change)."""
    return ("# Managed by AINI (`aini up`): local changes are overwritten.\n"
            "# sshd listens on every Port line of every file it reads: during a move of the SSH port\n"
            "# both ports stand here, until the new one has been reached from the operator's side.\n"
            f"Port {port}\n")


def user_data(admin_user: str, public_keys: list[str], ssh_port: int = 22) -> str:
    """cloud-init for the first boot: the admin user with the operator's keys, no passwords,
    no root login, sshd on `ssh_port` from the start (the Cloud Firewall lets only that port
    in). The `base` role then hardens the rest."""
    doc: dict[str, Any] = {
        "users": [
            {
                "name": admin_user,
                "groups": ["sudo"],
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": public_keys,
            }
        ],
        "ssh_pwauth": False,
        "disable_root": True,
    }
    if ssh_port != 22:
        # cloud-init writes files before sshd first starts; the restart covers an image
        # whose sshd starts earlier.
        doc["write_files"] = [{"path": "/etc/ssh/sshd_config.d/00-aini-port.conf", "owner": "root:root",
                               "permissions": "0644", "content": sshd_port_conf(ssh_port)}]
        doc["runcmd"] = [["systemctl", "try-restart", "ssh"]]
    return "#cloud-config\n" + dump(doc)


def firewall_rules(target: HetznerTarget, former_ssh_ports: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """The Cloud Firewall's inbound rules: SSH (from target.ssh_from), HTTP, HTTPS and ping."""
    ssh_from = target.ssh_from or ANYWHERE
    ssh = [{"description": SSH_RULE, "direction": "in", "protocol": "tcp", "port": str(target.ssh_port),
            "source_ips": ssh_from}]
    ssh += [{"description": FORMER_SSH_RULE, "direction": "in", "protocol": "tcp", "port": str(port),
             "source_ips": ssh_from} for port in former_ssh_ports if port != target.ssh_port]
    return ssh + [
        {"description": "http", "direction": "in", "protocol": "tcp", "port": "80", "source_ips": ANYWHERE},
        {"description": "https", "direction": "in", "protocol": "tcp", "port": "443", "source_ips": ANYWHERE},
        {"description": "ping", "direction": "in", "protocol": "icmp", "source_ips": ANYWHERE},
    ]


def open_ssh_ports(client: Client, config: AiniConfig) -> tuple[int, ...]:
    """The SSH ports the project's Cloud Firewall lets in now, when its server exists: the
    server may still listen on one of them (its port changed in aini.yml since)."""
    n = cloud.names(config)
    if client.servers.get_by_name(n["server"]) is None:
        return ()  # a new server listens on target.ssh_port from its first boot (cloud-init)
    firewall = client.firewalls.get_by_name(n["firewall"])
    if firewall is None:
        return ()
    return tuple(int(r.port) for r in firewall.rules or []
                 if r.direction == "in" and r.protocol == "tcp" and (r.description or "").startswith(SSH_RULE)
                 and r.port and r.port.isdigit())


def playbook_vars(config: AiniConfig, plan: cloud.CloudPlan, public_keys: list[str], admin_user: str,
                  datacenter: str | None, former_ssh_ports: tuple[int, ...] = ()) -> dict[str, Any]:
    target: HetznerTarget = config.target  # type: ignore[assignment]
    return {
        "cloud": {
            "names": cloud.names(config),
            "labels": cloud.labels(config),
            "server_type": target.server_type,
            "location": target.location,
            "datacenter": datacenter,
            "image": target.image,
            "ssh_public_keys": public_keys,
            "ssh_port": target.ssh_port,
            "firewall_rules": firewall_rules(target, former_ssh_ports),
            "ssh_port_moving": bool(former_ssh_ports),
            "primary_ip": target.primary_ip,
            "volume_gb": target.volume_gb,
            "dns_zone": target.dns_zone,
            "dns_records": plan.dns_records,
            "user_data": user_data(admin_user, public_keys, target.ssh_port),
        }
    }


def refuse_foreign(client: Client, config: AiniConfig) -> None:
    """A resource with AINI's name but without this project's label belongs to someone else:
    adopting it (as name-based modules would) could reconfigure or later destroy it."""
    apis = {"server": client.servers, "firewall": client.firewalls, "ssh_key": client.ssh_keys,
            "volume": client.volumes, "primary_ip": client.primary_ips}  # fmt: skip
    for kind, name in cloud.wanted(config):
        found = apis[kind].get_by_name(name)
        if found is not None and (found.labels or {}).get(cloud.LABEL) != config.project:
            raise InputError(
                f"a {kind.replace('_', ' ')} named '{name}' exists in the Hetzner project but was not created by "
                f"AINI for project '{config.project}'; rename it, or set `project:` in aini.yml to another name"
            )


def provision(config: AiniConfig, project_dir: Path, admin_user: str, progress: Progress | None = None) -> Provisioned:
    from hcloud import APIException
    from requests import RequestException

    target: HetznerTarget = config.target  # type: ignore[assignment]
    client = cloud.connect()
    public_keys = read_public_keys(target, project_dir)
    try:
        plan = cloud.plan(config, cloud.read_offers(client), cloud.read_owned(client, config))
        refuse_foreign(client, config)
        datacenter = None
        if target.primary_ip:
            datacenter = next((dc.name for dc in client.datacenters.get_all() if dc.location.name == target.location), None)
        former = tuple(p for p in open_ssh_ports(client, config) if p != target.ssh_port)
        variables = playbook_vars(config, plan, public_keys, admin_user, datacenter, former)
        result = run_playbook(PLAYBOOK, LOCAL_INVENTORY, variables=variables,
                              secrets=[cloud.token()], progress=progress, where="Hetzner Cloud")
        servers = client.servers.get_all(label_selector=cloud.selector(config), name=cloud.names(config)["server"])
    except (APIException, RequestException) as exc:
        raise cloud.api_error(exc) from None
    if len(servers) != 1 or not servers[0].public_net.ipv4:
        raise AiniError("the server was not found after provisioning; run `aini up` again to resume")
    return Provisioned(servers[0].public_net.ipv4.ip, result.changed, round(result.elapsed, 1), plan, former)


def close_former_ssh_ports(config: AiniConfig, project_dir: Path, admin_user: str,
                           progress: Progress | None = None) -> int:
    """Let only target.ssh_port in for SSH; called once sshd answers there. Returns the
    number of changes."""
    from hcloud import APIException
    from requests import RequestException

    target: HetznerTarget = config.target  # type: ignore[assignment]
    names = cloud.names(config)
    variables = {"cloud": {"names": names, "labels": cloud.labels(config),
                           "firewall_rules": firewall_rules(target)}}
    try:
        result = run_playbook(FIREWALL_PLAYBOOK, LOCAL_INVENTORY, variables=variables, secrets=[cloud.token()],
                              progress=progress, where="Hetzner Cloud")
    except (APIException, RequestException) as exc:
        raise cloud.api_error(exc) from None
    return result.changed
