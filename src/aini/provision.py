"""`aini up`, cloud half: provision the Hetzner Cloud server with the `provision.yml`
playbook (the real `hetzner.hcloud` modules), then hand its address to host configuration.

The decisions (names, labels, firewall sources, cloud-init) are pure functions of the
config; the API is read only to check prices/availability and to refuse adopting a
resource with AINI's name that AINI did not create.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cloud
from .errors import AiniError, InputError
from .render.yaml import dump
from .runner import Progress, run_playbook

if TYPE_CHECKING:
    from hcloud import Client

    from .config import AiniConfig, HetznerTarget

PLAYBOOK = "provision.yml"


@dataclass(frozen=True)
class Provisioned:
    ipv4: str
    changed: int
    elapsed: float
    plan: cloud.CloudPlan


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


def user_data(admin_user: str, public_keys: list[str]) -> str:
    """cloud-init for the first boot: the admin user with the operator's keys, no passwords,
    no root login. The `base` role then hardens the rest."""
    doc = {
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
    return "#cloud-config\n" + dump(doc)


def playbook_vars(config: AiniConfig, plan: cloud.CloudPlan, public_keys: list[str], admin_user: str, datacenter: str | None) -> dict[str, Any]:
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
            "ssh_from": target.ssh_from or ["0.0.0.0/0", "::/0"],
            "primary_ip": target.primary_ip,
            "volume_gb": target.volume_gb,
            "dns_zone": target.dns_zone,
            "dns_records": plan.dns_records,
            "user_data": user_data(admin_user, public_keys),
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
        variables = playbook_vars(config, plan, public_keys, admin_user, datacenter)
        local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        result = run_playbook(PLAYBOOK, {"all": {"hosts": {"localhost": local}}}, variables=variables,
                              secrets=[cloud.token()], progress=progress, where="Hetzner Cloud")
        servers = client.servers.get_all(label_selector=cloud.selector(config), name=cloud.names(config)["server"])
    except (APIException, RequestException) as exc:
        raise cloud.api_error(exc) from None
    if len(servers) != 1 or not servers[0].public_net.ipv4:
        raise AiniError("the server was not found after provisioning; run `aini up` again to resume")
    return Provisioned(servers[0].public_net.ipv4.ip, result.changed, round(result.elapsed, 1), plan)
