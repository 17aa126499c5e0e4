"""CIS Docker Benchmark section 5 over every rendered container (README, "The deploy bundle").

The table is read from the compose files AINI writes, not from the catalog: what Docker is
told is what counts. Each exception from the strictest setting must carry its reason."""
from __future__ import annotations

import yaml

from aini import catalog
from aini.render import bundle
from tests.unit.conftest import config_of, seed_store

SOCKET = "/var/run/docker.sock"
DROPS_TO_USER = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
# container -> (capabilities after cap_drop ALL, or "default" when Docker's set is kept; no new privileges; read-only root)
EXPECTED = {
    "traefik": (["NET_BIND_SERVICE"], True, True),
    "consul": (DROPS_TO_USER, True, False),
    "vault": (DROPS_TO_USER, True, False),
    "openbao": ([], True, False),
    "mongodb": (DROPS_TO_USER, True, False),
    "meilisearch": ([], True, False),
    "librechat": ([], True, False),
    "n8n-postgres": (DROPS_TO_USER, True, False),
    "n8n": ([], True, False),
    "mariadb": (DROPS_TO_USER, True, False),
    "redis": (DROPS_TO_USER, True, False),
    "nextcloud": ("default", True, False),
    "nextcloud-cron": ("default", True, False),
    "onlyoffice": ("default", False, False),
    "socket-proxy": ([], True, True),
    "netdata": ("default+SYS_PTRACE", False, False),
    "watchtower": ([], True, False),
}


def rendered_services(tmp_path) -> dict[str, dict]:
    services: dict[str, dict] = {}
    for n, flavor in enumerate(("vault", "openbao")):
        config = config_of(services__vault={"enabled": True, "flavor": flavor},
                           services__n8n={"enabled": True, "database": "postgres"})
        files = bundle.render(config, seed_store(tmp_path / f"s{n}"))
        for path, f in files.items():
            if path.endswith("compose.yml"):
                services |= yaml.safe_load(f.content)["services"]
    return services


def row(svc: dict) -> tuple[object, bool, bool]:
    if svc.get("cap_drop") == ["ALL"]:
        caps: object = svc.get("cap_add", [])
    else:
        assert "cap_drop" not in svc
        caps = "default" + "".join(f"+{c}" for c in svc.get("cap_add", []))
    return caps, "no-new-privileges:true" in svc.get("security_opt", []), svc.get("read_only") is True


def test_every_container_against_cis_docker_section_5(tmp_path):
    services = rendered_services(tmp_path)
    assert set(services) == {spec.name for spec in catalog.CATALOG}
    assert {name: row(svc) for name, svc in services.items()} == EXPECTED
    for name, svc in services.items():
        assert not svc.get("privileged"), name  # 5.4
        assert isinstance(svc["pids_limit"], int) and 0 < svc["pids_limit"] <= 4096, name  # 5.28
        assert "network_mode" not in svc and "ipc" not in svc and "uts" not in svc, name  # 5.9, 5.16, 5.21
        assert svc.get("pid") in (None, "host") and (svc.get("pid") == "host") == (name == "netdata"), name  # 5.15
        assert not [o for o in svc.get("security_opt", []) if "unconfined" in o], name  # 5.1, 5.22
        assert svc.get("user") != "root", name
        mounts = [v for v in svc.get("volumes", []) if v.startswith(SOCKET)]  # 5.31
        assert mounts == {"socket-proxy": [f"{SOCKET}:{SOCKET}:ro"], "watchtower": [f"{SOCKET}:{SOCKET}"]}.get(name, []), name
        assert not [v for v in svc.get("volumes", []) if v.split(":")[0] in ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")
                    and not v.endswith(":ro")], name  # 5.5: host system directories only read-only


def test_each_exception_carries_its_reason():
    for spec in catalog.CATALOG:
        if spec.privileges.exceptions:
            assert spec.privileges.why.strip(), f"{spec.name}: {spec.privileges.exceptions} without a reason"
