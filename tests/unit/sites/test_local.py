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
from aini.errors import AiniError
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


def test_stream_moves_bytes_through_a_command_without_holding_them(tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    (tmp_path / "in").write_bytes(data)
    site = sites_local.LocalSite(tmp_path)
    with open(tmp_path / "in", "rb") as src, open(tmp_path / "out", "wb") as dst:
        r = site.stream(docker_cmd.Cmd(("cat",)), stdin=src, stdout=dst)
    assert r.returncode == 0 and r.stdout is None and (tmp_path / "out").read_bytes() == data
    failed = site.stream(docker_cmd.Cmd(("sh", "-c", "echo why >&2; exit 3")))
    assert failed.returncode == 3 and failed.stderr == "why\n"
    slow = site.stream(docker_cmd.Cmd(("sleep", "5"), timeout=0.5))
    assert slow.returncode == 124 and "timed out" in slow.stderr
    with pytest.raises(AiniError, match="no-such-program is not installed"):
        site.stream(docker_cmd.Cmd(("no-such-program",)))


def test_write_and_remove_are_private_and_idempotent(tmp_path):
    site = sites_local.LocalSite(tmp_path / "root")
    site.write("manifest.json", "{}\n")
    assert (tmp_path / "root" / "manifest.json").stat().st_mode & 0o777 == 0o600
    (tmp_path / "root" / "g").mkdir()
    (tmp_path / "root" / "g" / "f").write_text("x")
    site.remove("g")
    site.remove("g")
    site.remove("manifest.json")
    assert list((tmp_path / "root").iterdir()) == []
