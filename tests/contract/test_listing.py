"""Pagination, label selectors, name filters and sorting, through hcloud-python and raw HTTP."""

from __future__ import annotations

import pytest
import requests

from .conftest import TOKEN
from .helpers import api_error, create_server, ssh_public_key


def get(sim, path, **params):
    return requests.get(sim.url + path, params=params, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def test_pagination_over_more_than_50_items(client, sim):
    for i in range(120):
        client.ssh_keys.create(name=f"key-{i:03d}", public_key=ssh_public_key(i), labels={"batch": str(i % 3)})
    keys = client.ssh_keys.get_all()
    assert len(keys) == 120 and len({k.id for k in keys}) == 120
    pages = [r for r in sim.requests if r.method == "GET" and r.path == "/ssh_keys"]
    assert len(pages) == 3  # hcloud-python asks for per_page=50 and follows next_page

    meta = get(sim, "/ssh_keys", page=2, per_page=50).json()["meta"]["pagination"]
    assert meta == {"page": 2, "per_page": 50, "previous_page": 1, "next_page": 3, "last_page": 3,
                    "total_entries": 120}
    body = get(sim, "/ssh_keys", per_page=500).json()
    assert body["meta"]["pagination"]["per_page"] == 50 and len(body["ssh_keys"]) == 50
    last = get(sim, "/ssh_keys", page=3, per_page=50).json()
    assert len(last["ssh_keys"]) == 20 and last["meta"]["pagination"]["next_page"] is None
    beyond = get(sim, "/ssh_keys", page=9).json()
    assert beyond["ssh_keys"] == [] and beyond["meta"]["pagination"]["last_page"] == 5
    default = get(sim, "/ssh_keys").json()["meta"]["pagination"]
    assert default["per_page"] == 25 and default["last_page"] == 5
    assert len(client.ssh_keys.get_all(label_selector="batch=1")) == 40


def test_label_selectors(client):
    specs = {"a": {"env": "prod", "role": "web"}, "b": {"env": "prod", "role": "db"},
             "c": {"env": "staging", "role": "web", "canary": ""}, "d": {}}
    for name, labels in specs.items():
        create_server(client, name, labels=labels, wait=False)

    def names(selector):
        return sorted(s.name for s in client.servers.get_all(label_selector=selector))

    assert names("env=prod") == ["a", "b"]
    assert names("env==prod") == ["a", "b"]
    assert names("env!=prod") == ["c", "d"]
    assert names("canary") == ["c"]
    assert names("!canary") == ["a", "b", "d"]
    assert names("role in (web,db)") == ["a", "b", "c"]
    assert names("env notin (prod)") == ["c", "d"]
    assert names("env=prod,role=web") == ["a"]
    assert names("role in (web, db),env!=staging") == ["a", "b"]
    assert names("env") == ["a", "b", "c"]
    err = api_error(client.servers.get_all, label_selector="env=(bad")
    assert err.code == "invalid_input"


def test_name_filter_status_filter_and_sort(client, sim):
    for name in ("zeta", "alpha", "mid"):
        create_server(client, name, start_after_create=False)
    assert [s.name for s in client.servers.get_all(name="mid")] == ["mid"]
    assert client.servers.get_by_name("nope") is None
    assert [s["name"] for s in get(sim, "/servers", sort="name:asc").json()["servers"]] == ["alpha", "mid", "zeta"]
    assert [s["name"] for s in get(sim, "/servers", sort="name:desc").json()["servers"]] == ["zeta", "mid", "alpha"]
    assert [s.name for s in client.servers.get_all(status=["off"])] == ["zeta", "alpha", "mid"]
    assert client.servers.get_all(status=["running"]) == []
    assert get(sim, "/servers", sort="bogus").status_code == 400


@pytest.mark.parametrize("path", ["/servers", "/volumes", "/firewalls", "/networks", "/primary_ips",
                                  "/ssh_keys", "/zones", "/images", "/locations", "/server_types"])
def test_empty_and_filtered_lists_have_pagination_meta(sim, path):
    body = get(sim, path, name="nothing-has-this-name").json()
    assert body["meta"]["pagination"]["total_entries"] == 0
    assert body["meta"]["pagination"]["last_page"] == 1
