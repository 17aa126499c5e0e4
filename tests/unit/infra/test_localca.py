"""The local target's CA."""

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


def test_local_ca_issues_a_certificate_for_every_route_and_reuses_it(tmp_path):
    config = validate_data({"domain": "localhost", "email": "a@example.com", "target": {"kind": "local"},
                            "services": {"onlyoffice": {"enabled": False}}}, "t")
    hosts = localca.hostnames(config)
    assert "chat.localhost" in hosts and "office.localhost" not in hosts
    certs = localca.ensure(tmp_path / "ca", "localhost", hosts)
    assert certs.ca_created and certs.issued and certs.names == tuple(hosts)
    assert certs.key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    again = localca.ensure(tmp_path / "ca", "localhost", hosts)
    assert not again.ca_created and not again.issued
    more = localca.ensure(tmp_path / "ca", "localhost", [*hosts, "office.localhost"])
    assert more.issued and not more.ca_created
    # openssl agrees: the chain verifies for the name, under the CA's name constraint.
    r = subprocess.run(["openssl", "verify", "-CAfile", str(certs.ca_cert), "-verify_hostname", "office.localhost",
                        str(certs.cert)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    ssl.create_default_context(cafile=str(certs.ca_cert))  # loads as a trust anchor
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=340)  # within 30 days of expiry: renewed
    assert localca.ensure(tmp_path / "ca", "localhost", [*hosts, "office.localhost"], now=later).issued


def test_local_ca_refuses_a_readable_key(tmp_path):
    certs = localca.ensure(tmp_path, "example.test", ["a.example.test"])
    assert "*.example.test" in certs.names
    (tmp_path / "ca.key").chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        localca.ensure(tmp_path, "example.test", ["a.example.test"])


def test_local_ca_is_made_anew_for_another_domain(tmp_path):
    first = localca.ensure(tmp_path, "one.test", ["a.one.test"])
    ca1 = first.ca_cert.read_bytes()
    second = localca.ensure(tmp_path, "two.test", ["a.two.test"])
    assert second.ca_created and second.ca_cert.read_bytes() != ca1
