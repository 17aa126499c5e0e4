"""The local site's files: written in place (same inode), modes kept, stale files removed."""

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


def test_sync_writes_in_place_keeps_inodes_and_modes(tmp_path):
    f = bundle.BundleFile
    files = {"g/compose.yml": f("a"), "g/g.env": f("S=1\n", private=True), "g/dyn/r.yml": f("r")}
    assert sorted(sites_local.sync_files(files, tmp_path)) == sorted(files)
    inode = (tmp_path / "g/g.env").stat().st_ino
    assert (tmp_path / "g/g.env").stat().st_mode & 0o777 == 0o600
    files["g/g.env"] = f("S=2\n", private=True)
    del files["g/dyn/r.yml"]
    (tmp_path / "g/dyn/kept.yml").write_text("k")
    changed = sites_local.sync_files(files, tmp_path, keep=["g/dyn/kept.yml"])
    assert sorted(changed) == ["g/dyn/r.yml", "g/g.env"]
    assert (tmp_path / "g/g.env").stat().st_ino == inode  # a bind mount of it sees the change
    assert (tmp_path / "g/g.env").read_text() == "S=2\n"
    assert not (tmp_path / "g/dyn/r.yml").exists() and (tmp_path / "g/dyn/kept.yml").exists()
    assert sites_local.sync_files(files, tmp_path, keep=["g/dyn/kept.yml"]) == []
