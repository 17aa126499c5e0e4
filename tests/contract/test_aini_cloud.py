"""AINI's own cloud edge (aini.cloud) against the simulator: offers and prices read from the
API, labelled resources found again, and destroy removing exactly what is labelled."""

from __future__ import annotations

import pytest

from aini.infra import hetzner as cloud
from aini.config import validate_data
from aini.errors import AiniError, InputError

from .conftest import TOKEN, make_client
from .helpers import create_server, ssh_public_key


def config(**target):
    return validate_data({"domain": "example.com", "email": "a@example.com", "target": {"kind": "hetzner", **target}}, "t")


def test_plan_reads_prices_from_the_api_and_lists_what_it_would_create(sim):
    client = make_client(sim.url)
    offers = cloud.read_offers(client)
    plan = cloud.plan(config(volume_gb=20), offers, cloud.read_owned(client, config()))
    assert [(c.action, c.kind) for c in plan.changes] == [("create", "ssh_key"), ("create", "firewall"), ("create", "server"), ("create", "volume")]
    cx33 = next(o for o in offers if o.name == "cx33")
    assert plan.monthly_gross == cx33.monthly_gross["fsn1"] and float(plan.monthly_gross) > 0


def test_unavailable_type_is_refused_naming_alternatives(sim):
    offers = cloud.read_offers(make_client(sim.url))
    with pytest.raises(InputError) as info:
        cloud.plan(config(server_type="cx53", location="hel1"), offers, [])
    message = str(info.value)
    assert "cx53 cannot be ordered in hel1" in message and "available in fsn1, nbg1" in message
    assert "Similar types there: cpx62" in message  # same architecture first, then memory


def test_destroy_removes_exactly_the_labelled_resources(sim):
    client = make_client(sim.url)
    cfg = config()
    mine = cloud.labels(cfg)
    key = client.ssh_keys.create("aini-admin", ssh_public_key(1), labels=mine)
    fw = client.firewalls.create("aini-firewall", labels=mine).firewall
    create_server(client, "aini", labels=mine, ssh_keys=[key], firewalls=[fw])
    client.volumes.create(10, "aini-data", location=client.locations.get_by_name("fsn1"), labels=mine)
    # Not ours: another project's server and an unlabelled key must survive.
    create_server(client, "other", labels={cloud.LABEL: "other"})
    client.ssh_keys.create("personal", ssh_public_key(2))

    said: list[str] = []
    removed = cloud.destroy(client, cfg, keep={"volume"}, say=said.append)
    assert sorted((r.kind, r.name) for r in removed) == [("firewall", "aini-firewall"), ("server", "aini"), ("ssh_key", "aini-admin")]
    assert "kept volume aini-data" in said
    left = cloud.read_owned(client, cfg)
    assert [(o.kind, o.name) for o in left] == [("volume", "aini-data")]
    assert {s.name for s in client.servers.get_all()} == {"other"}
    assert {k.name for k in client.ssh_keys.get_all()} == {"personal"}
    cloud.destroy(client, cfg, keep=set(), say=said.append)
    assert cloud.read_owned(client, cfg) == []


def test_api_errors_become_one_sentence(sim):
    client = make_client(sim.url, token="wrong-token")
    from hcloud import APIException

    with pytest.raises(APIException) as info:
        cloud.read_offers(client)
    error = cloud.api_error(info.value)
    assert isinstance(error, AiniError) and "refused the token in HCLOUD_TOKEN" in str(error)


def test_connect_takes_the_token_from_the_environment_only(monkeypatch, sim):
    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)
    with pytest.raises(InputError, match="export HCLOUD_TOKEN"):
        cloud.connect(prompt=lambda _: "")
    monkeypatch.setenv("HCLOUD_TOKEN", TOKEN)
    monkeypatch.setenv("HCLOUD_ENDPOINT", sim.url)
    assert cloud.read_offers(cloud.connect())
