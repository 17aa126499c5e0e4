"""The deployed record, saved after each group."""

from __future__ import annotations

import datetime as dt
import io
import json
import ssl
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from aini import catalog
from aini.catalog.nextcloud import ENABLE_ONLYOFFICE
from aini.config import validate_data
from aini.deploy import apply, diagnose, record
from aini.deploy import plan as deploy_plan
from aini.docker import cmd as docker_cmd
from aini.docker import compose as compose_cmds
from aini.docker import engine
from aini.infra import localca
from aini.ops import plan as ops_plan
from aini.render import bundle
from aini.sites import local as sites_local
from aini.store import SecretStore

from tests.unit.deploy.common import TOOLS, deployed_at, manifest


def test_record_group_tracks_what_is_deployed(tmp_path):
    m = manifest(traefik="a", n8n="b")
    m["files"] = {"traefik/compose.yml": "1", "n8n/compose.yml": "2"}
    site, deployed = sites_local.LocalSite(tmp_path), None
    for group, digest in (("traefik", "a"), ("n8n", "b"), ("n8n", None)):
        deployed = record.updated_deployed(deployed, m, group, digest)
        site.write(record.DEPLOYED_MANIFEST, record.deployed_text(deployed))
    saved = deployed_at(tmp_path)
    assert list(saved["groups"]) == ["traefik"] and saved["files"] == {"traefik/compose.yml": "1"}
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o600
