"""Docker and Compose commands as data: argv lists without secrets, and the one that runs Python on the engine's host."""

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


def test_up_argv_is_a_list_without_secrets():
    cmd = compose_cmds.compose_up_cmd(TOOLS, Path("/d"), "nextcloud", 120)
    assert cmd.argv == (
        "/opt/compose", "--ansi", "never", "--progress", "plain", "--project-name", "aini-nextcloud",
        "--project-directory", "/d/nextcloud", "-f", "/d/nextcloud/compose.yml",
        "up", "--detach", "--wait", "--wait-timeout", "120", "--pull", "never", "--remove-orphans",
    )
    assert cmd.timeout == 420
    again = compose_cmds.compose_up_cmd(TOOLS, Path("/d"), "traefik", 60, recreate=["traefik"])
    assert again.argv[-3:] == ("--force-recreate", "--no-deps", "traefik")


def test_create_makes_the_containers_without_starting_any():
    cmd = compose_cmds.compose_create_cmd(TOOLS, Path("/d"), "nextcloud")
    assert cmd.argv[-5:] == ("up", "--no-start", "--pull", "never", "--remove-orphans")
    assert "--project-name" in cmd.argv and "aini-nextcloud" in cmd.argv and "--detach" not in cmd.argv


def test_the_source_address_command_really_prints_where_the_kernel_sends_from():
    cmd = engine.source_address_cmd("127.0.0.1", 8200)
    assert cmd.argv[0] == "python3" and cmd.argv[-2:] == ("127.0.0.1", "8200")  # data, not a shell string
    r = sites_local.run_cmd(cmd)
    assert (r.returncode, r.stdout.strip()) == (0, "127.0.0.1")
