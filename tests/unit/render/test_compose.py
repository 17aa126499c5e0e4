"""Every rendered compose project is valid for the real Docker Compose v2 (no daemon needed)."""

import subprocess

import pytest

from aini.render import bundle

from ..conftest import config_of, seed_store
from ..tools import compose_binary

VARIANTS = {
    "default": config_of(),
    "everything": config_of(
        services={"n8n": {"database": "postgres"}, "vault": {"flavor": "openbao"}}, tls={"challenge": "dns", "staging": True}
    ),
    "minimal": config_of(
        services={n: {"enabled": False} for n in ("consul", "vault", "librechat", "n8n", "nextcloud", "onlyoffice", "netdata", "watchtower")}
    ),
    "local": config_of(domain="localhost", target={"kind": "local"}),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_compose_config_accepts_every_group(variant, tmp_path):
    store = seed_store(tmp_path / ".aini")
    if variant == "everything":
        store.set_user("hetzner_dns_token", "dns-token-value")
    files = bundle.render(VARIANTS[variant], store)
    bundle.write(files, tmp_path / "bundle")
    groups = sorted({p.split("/")[0] for p in files if "/" in p})
    assert groups
    compose = compose_binary()
    for group in groups:
        result = subprocess.run(
            [compose, "--project-directory", str(tmp_path / "bundle" / group), "-f", "compose.yml", "config", "--quiet"],
            cwd=tmp_path / "bundle" / group,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{variant}/{group}: {result.stderr}"


def test_compose_rejects_a_broken_project(tmp_path):
    """The check above can fail: a compose file with an unknown key is refused."""
    (tmp_path / "compose.yml").write_text("services:\n  x:\n    image: a:1\n    no_such_key: 1\n")
    result = subprocess.run([compose_binary(), "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
