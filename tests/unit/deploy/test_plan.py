"""The deploy plan, decided without I/O from manifests, what runs and which networks exist."""

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


def test_plan_first_deploy_brings_everything_up_in_order():
    p = deploy_plan.plan(typed(manifest(traefik="a", n8n="b")), None, {}, {})
    assert [(a.group, a.action, a.reason) for a in p.actions] == [("traefik", "up", "new"), ("n8n", "up", "new")]
    assert p.images == ("img/traefik:1", "img/n8n:1")


def test_plan_skips_unchanged_running_groups_and_redeploys_stopped_ones():
    m = manifest(traefik="a", n8n="b", vault="c")
    deployed = manifest(traefik="a", n8n="x", vault="c")
    running = {"traefik": {"traefik"}, "n8n": {"n8n"}}
    p = deploy_plan.plan(typed(m), typed(deployed), running, {})
    assert [(a.group, a.action) for a in p.actions] == [("traefik", "skip"), ("n8n", "up"), ("vault", "up")]
    assert p.actions[2].reason == "not running: vault"
    assert p.images == ("img/n8n:1", "img/vault:1")


def test_plan_takes_down_groups_no_longer_in_the_bundle():
    p = deploy_plan.plan(typed(manifest(traefik="a")), typed(manifest(traefik="a", onlyoffice="o")), {"traefik": {"traefik"}}, {})
    assert [(a.group, a.action) for a in p.actions] == [("traefik", "skip"), ("onlyoffice", "down")]
    assert p.images == ()


def test_plan_recreates_services_whose_mounted_file_changed():
    compose = {"services": {"consul": {"image": "c", "volumes": ["data:/d", "./consul.hcl:/c/consul.hcl:ro"]}}}
    m = manifest(consul="new")
    m["files"] = {"consul/consul.hcl": "2", "consul/compose.yml": "1"}
    old = manifest(consul="old")
    old["files"] = {"consul/consul.hcl": "1", "consul/compose.yml": "1"}
    p = deploy_plan.plan(typed(m), typed(old), {"consul": {"consul"}}, {"consul": compose}, {"consul": compose})
    assert p.actions[0].recreate == ("consul",)
    changed = {"services": {"consul": {**compose["services"]["consul"], "image": "d"}}}
    p = deploy_plan.plan(typed(m), typed(old), {"consul": {"consul"}}, {"consul": changed}, {"consul": compose})
    assert p.actions[0].recreate == ()  # compose recreates it anyway


def test_plan_networks_created_by_their_group_or_by_the_deploy_step():
    composes = {
        "traefik": {"networks": {"proxy": {"name": "aini-proxy"}}},
        "n8n": {"networks": {"proxy": {"name": "aini-proxy", "external": True},
                             "shared": {"name": "aini-shared", "external": True}}},
    }
    m = manifest(traefik="a", n8n="b")
    running = {"traefik": {"traefik"}, "n8n": {"n8n"}}
    p = deploy_plan.plan(typed(m), typed(m), running, composes, existing_networks=["aini-shared"])
    assert [(a.group, a.action, a.reason) for a in p.actions][0] == ("traefik", "up", "network aini-proxy missing")
    p = deploy_plan.plan(typed(m), typed(m), running, composes, existing_networks=["aini-proxy"])
    assert p.networks == (engine.NetworkSpec("aini-shared"),)
    assert engine.network_create_cmd(TOOLS, engine.NetworkSpec("n", "10.1.0.0/24"), "p").argv == (
        "docker", "network", "create", "--label", "aini.project=p", "--subnet", "10.1.0.0/24", "n")


def test_the_plan_as_text_in_the_order_it_runs():
    """`aini plan --deployed` prints these lines; they are the plan's contract, asserted verbatim."""
    composes = {"consul": {"services": {"consul": {"image": "c", "volumes": ["./consul.hcl:/c/consul.hcl:ro"]}}},
                "n8n": {"networks": {"shared": {"name": "aini-shared", "external": True}}}}
    m = manifest(traefik="a", consul="new", n8n="b", vault="c")
    m["files"] = {"consul/consul.hcl": "2"}
    m["networks"] = {"shared": {"name": "aini-shared", "subnet": "10.88.0.0/24", "internal": True}}
    deployed = manifest(traefik="a", consul="old", n8n="b", vault="c", onlyoffice="o")
    deployed["files"] = {"consul/consul.hcl": "1"}
    running = {"traefik": {"traefik"}, "consul": {"consul"}, "n8n": {"n8n"}}
    p = deploy_plan.plan(typed(m), typed(deployed), running, composes, composes, existing_networks=["aini-proxy"])
    assert p.lines() == [
        "+ network aini-shared 10.88.0.0/24 internal",
        "= traefik        skip unchanged",
        "+ consul         up   changed (recreate consul)",
        "= n8n            skip unchanged",
        "+ vault          up   not running: vault",
        "- onlyoffice     down no longer in the bundle",
        "images: img/consul:1, img/vault:1",
    ]


def test_nothing_to_do_is_one_line_per_group():
    m = manifest(traefik="a", n8n="b")
    p = deploy_plan.plan(typed(m), typed(m), {"traefik": {"traefik"}, "n8n": {"n8n"}}, {})
    assert p.lines() == ["= traefik        skip unchanged", "= n8n            skip unchanged"]
    assert p.changed == []


def test_only_the_control_plane_keeps_its_groups_and_their_images():
    p = deploy_plan.plan(typed(manifest(traefik="a", vault="b", n8n="c")), typed(manifest(old="x")), {}, {})
    assert p.only(["traefik", "vault"], typed(manifest(traefik="a", vault="b", n8n="c"))).lines() == [
        "+ traefik        up   new",
        "+ vault          up   new",
        "images: img/traefik:1, img/vault:1",
    ]


def test_a_version_change_and_the_backup_before_it_are_shown_after_the_groups():
    from dataclasses import replace

    from aini.deploy.versions import VersionChange

    m = manifest(n8n="b")
    p = replace(deploy_plan.plan(typed(m), typed(manifest(n8n="a")), {"n8n": {"n8n"}}, {}),
                versions=(VersionChange("n8n", "n8nio/n8n:2.1.0", "n8nio/n8n:2.2.0"),),
                notes=("backup first: n8n (a run into backup.repository, before the group is touched)",))
    expected = [
        "+ n8n            up   changed",
        "~ n8n            2.1.0 → 2.2.0",
        "backup first: n8n (a run into backup.repository, before the group is touched)",
        "images: img/n8n:1",
    ]
    assert p.lines() == expected
    assert p.only(["n8n"], typed(m)).lines() == expected
