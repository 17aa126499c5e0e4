"""What the deploy tests share: tools with fixed paths, a manifest of named groups, and the
deployed record a local site holds."""

from __future__ import annotations

from aini import catalog
from aini.config import validate_data
from aini.deploy import record
from aini.render import bundle
from aini.store import SecretStore
from aini.docker import cmd as docker_cmd
from aini.render.manifest import Manifest
from aini.sites import local as sites_local

TOOLS = docker_cmd.Tools(("docker",), ("/opt/compose",))


def deployed_at(root) -> dict | None:
    return record.parse_deployed(sites_local.LocalSite(root).read(record.DEPLOYED_MANIFEST))


def manifest(**groups) -> dict:
    return {
        "project": "p",
        "order": list(groups),
        "groups": {g: {"hash": h, "services": [g], "images": {g: f"img/{g}:1"}} for g, h in groups.items()},
        "files": {},
    }


def typed(document: dict) -> Manifest:
    return Manifest.from_dict(document)


def local_bundle(tmp_path, **data):
    """The local target's default bundle with its secrets generated: (config, store, files)."""
    config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"}, **data}, "t")
    store = SecretStore(tmp_path / ".aini")
    store.ensure(catalog.secrets_for(catalog.enabled(config)))
    return config, store, bundle.render(config, store)
