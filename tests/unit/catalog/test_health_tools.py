"""Every container health check calls only programs its upstream image carries.

The doubles carry the same tools (install-double.sh), so the e2e would catch a slip too,
but only for the images that are doubles; this checks every catalog entry against the
fact sheet, tests/harness/images/UPSTREAM.md ("tools" of each image).
"""
from __future__ import annotations

import shlex

from aini import catalog

SHELL = {"sh", "grep"}  # /bin/sh and its grep (busybox on Alpine, coreutils/grep on Debian)
# image -> programs a health check may call there (UPSTREAM.md)
TOOLS = {
    "docker.io/library/traefik": {"traefik"} | SHELL | {"wget"},
    "docker.io/hashicorp/consul": SHELL | {"wget", "curl", "consul"},
    "docker.io/hashicorp/vault": SHELL | {"wget", "vault"},
    "docker.io/openbao/openbao": SHELL | {"wget", "bao"},
    "docker.io/library/mongo": SHELL | {"mongosh"},
    "docker.io/getmeili/meilisearch": SHELL | {"wget", "curl"},
    "registry.librechat.ai/danny-avila/librechat": SHELL | {"wget"},
    "docker.io/library/postgres": SHELL | {"pg_isready", "psql"},
    "docker.n8n.io/n8nio/n8n": SHELL | {"wget"},
    "docker.io/library/mariadb": SHELL | {"healthcheck.sh", "mariadb"},
    "docker.io/library/redis": SHELL | {"redis-cli"},
    "docker.io/library/nextcloud": SHELL | {"curl", "php"},
    "docker.io/onlyoffice/documentserver": SHELL | {"curl", "wget"},
    "docker.io/wollomatic/socket-proxy": {"/healthcheck"},  # FROM scratch: the proxy and its health probe
    "docker.io/netdata/netdata": SHELL | {"curl"},
    "docker.io/nickfedor/watchtower": set(),  # FROM scratch: no shell at all
}


def programs(test: tuple[str, ...]) -> set[str]:
    kind, *rest = test
    if kind == "CMD":
        return {rest[0]}
    assert kind == "CMD-SHELL"
    words = shlex.split(rest[0].replace("|", " | ").replace("&&", " && ").replace(";", " ; "))
    found, command_start = {"sh"}, True
    for word in words:
        if command_start:
            found.add(word)
        command_start = word in ("|", "&&", "||", ";")
    return found


def test_every_health_check_uses_only_tools_of_its_upstream_image():
    assert set(TOOLS) == {spec.image for spec in catalog.CATALOG}
    for spec in catalog.CATALOG:
        if spec.health.test is None:
            continue
        missing = programs(spec.health.test) - TOOLS[spec.image]
        assert not missing, f"{spec.name}: its health check calls {missing}, which {spec.image} does not carry"


def test_the_checker_sees_every_program_of_a_shell_pipeline():
    assert programs(("CMD-SHELL", "curl -fsS http://x/ | grep -qx true")) == {"sh", "curl", "grep"}
    assert programs(("CMD", "wget", "-qO-", "http://x/")) == {"wget"}
    assert "wget" not in TOOLS["docker.io/library/mongo"]  # a check calling wget in mongo would fail
