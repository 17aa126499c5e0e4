"""`aini plan`'s comparison with Consul's record of the last deploy."""

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


def test_plan_against_consul_names_new_changed_unchanged_and_removed_groups():
    from aini.ops.plan import diff_groups

    assert diff_groups({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "x", "d": "4"}) == [
        ("a", "unchanged"), ("b", "changed"), ("c", "new"), ("d", "removed")]
    assert diff_groups({"a": "1"}, None) == [("a", "new")]
