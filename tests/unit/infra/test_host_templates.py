"""The base role's templates, rendered as Ansible would (its `bool` filter added)."""

from __future__ import annotations

import jinja2

from aini.infra.ansible import ANSIBLE_DIR

TEMPLATES = ANSIBLE_DIR / "roles" / "base" / "templates"


def render(name: str, **variables) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined)
    env.filters["bool"] = lambda v: str(v).lower() in ("1", "true", "yes", "on")
    return env.get_template(name).render(**variables)


def origins(text: str) -> list[str]:
    block = text.split("Origins-Pattern {", 1)[1].split("};", 1)[0]
    return [line.strip().strip('";') for line in block.splitlines() if line.strip()]


def test_security_updates_come_from_debian_security_and_dockers_repository_when_it_is_used():
    docker = origins(render("52aini-unattended-upgrades.j2", docker_source="docker", base_unattended_reboot=False))
    assert docker[-1] == "origin=Docker,label=Docker CE" and all("Debian-Security" in o for o in docker[:-1])
    debian = origins(render("52aini-unattended-upgrades.j2", docker_source="debian", base_unattended_reboot=False))
    assert debian == docker[:-1]
    alone = origins(render("52aini-unattended-upgrades.j2", base_unattended_reboot=False))  # the base role alone
    assert alone == debian


def test_the_host_firewall_lets_containers_reach_no_more_than_the_internet_does():
    text = render("nftables.conf.j2", base_ssh_ports=[22], base_allowed_tcp_ports=[80, 443])
    chain = text.split("chain input {", 1)[1].split("chain forward {", 1)[0]
    assert "docker0" not in chain and "br-" not in chain and "policy drop" in chain
