"""What a failed deploy says: secrets scrubbed, missing images named with the settings that fix them."""

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

from tests.unit.deploy.common import TOOLS, deployed_at, manifest, typed


def test_scrub_removes_secret_values_and_parts_of_derived_ones():
    text = "JWT_SECRET=abcdefgh123 user admin:$2b$10$hashhashhash ok"
    out = diagnose.scrub(text, ["abcdefgh123", "fp1234567890abcd admin:$2b$10$hashhashhash"])
    assert out == "JWT_SECRET=*** user admin:*** ok"


def test_missing_images_message_names_them_and_explains_the_settings():
    m = manifest(nextcloud="a")
    text = diagnose.missing_images_message({"img/nextcloud:1": "not found"}, typed(m))
    assert "nextcloud: img/nextcloud:1 (not found)" in text
    assert "mirror:" in text and "overrides:" in text and "nextcloud: registry.example.com/nextcloud:1" in text
