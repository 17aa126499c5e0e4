"""Shared fixtures for the unit tests: a project directory with aini.yml and a secret store
seeded with known values, so rendered output is comparable byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bcrypt
import pytest
import yaml

from aini import catalog
from aini.config import validate_data
from aini.store import SecretStore

BASE = {"domain": "example.com", "email": "admin@example.com"}


def seed_store(directory: Path, user: str = "admin") -> SecretStore:
    """Known, distinctive values ('S3CRET-<name>-...') that tests can search output for."""
    generated = {s.name: f"S3CRET{s.name.replace('_', '')}x{'7' * 8}" for spec in catalog.CATALOG for s in spec.secrets}
    password = generated["admin_password"]
    fingerprint = hashlib.sha256(f"{user}:{password}".encode()).hexdigest()[:16]
    digest = bcrypt.hashpw(password.encode(), b"$2b$10$" + b"aini.golden.salt.value.").decode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "secrets.json"
    owner = generated["n8n_owner_password"]
    owner_hash = bcrypt.hashpw(owner.encode(), b"$2b$10$" + b"aini.golden.salt.value.").decode()
    derived = {"admin_htpasswd": f"{fingerprint} {user}:{digest}",
               "n8n_owner_password_bcrypt": f"{hashlib.sha256(owner.encode()).hexdigest()[:16]} {owner_hash}"}
    path.write_text(json.dumps({"generated": generated, "user": {}, "derived": derived}))
    path.chmod(0o600)
    return SecretStore(directory)


def config_of(**overrides):
    data = json.loads(json.dumps(BASE))
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return validate_data(data, "test")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with the default aini.yml and a seeded store in .aini/."""
    (tmp_path / "aini.yml").write_text(yaml.safe_dump(BASE))
    seed_store(tmp_path / ".aini")
    return tmp_path
