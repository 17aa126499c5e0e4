"""Auth, error envelope, rate limiting, retries of hcloud-python, and fault schedules."""

from __future__ import annotations

import pytest
import requests
from hcloud.actions import ActionFailedException

from tests.harness.hcloud_sim import Faults

from .conftest import TOKEN, make_client
from .helpers import api_error, create_server, ssh_public_key, statuses


def raw(sim, method, path, token=TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, sim.url + path, headers=headers, timeout=10, **kwargs)


def test_invalid_or_missing_token(sim):
    err = api_error(make_client(sim.url, token="wrong").locations.get_all)
    assert err.code == "unauthorized"
    resp = raw(sim, "GET", "/servers", token=None)
    assert resp.status_code == 401
    assert resp.json() == {"error": {"code": "unauthorized", "message": "unable to authenticate", "details": None}}


@pytest.mark.sim(readonly_tokens=["read-only"])
def test_read_only_token(sim):
    ro = make_client(sim.url, token="read-only")
    assert ro.locations.get_all()
    assert api_error(ro.ssh_keys.create, name="x", public_key=ssh_public_key(1)).code == "token_readonly"


def test_error_envelope_json_error_and_not_found(sim, client):
    resp = raw(sim, "POST", "/ssh_keys", data=b"{not json")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "json_error"
    resp = raw(sim, "GET", "/servers/987654")
    assert resp.status_code == 404 and set(resp.json()["error"]) == {"code", "message", "details"}
    resp = raw(sim, "POST", "/ssh_keys", json={"name": "only-name"})
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["fields"] == [
        {"name": "public_key", "messages": ["Missing data for required field."]}]
    assert api_error(client.volumes.get_by_id, 1).code == "not_found"


def test_rate_limit_headers(sim):
    first = raw(sim, "GET", "/locations")
    second = raw(sim, "GET", "/locations")
    assert first.headers["RateLimit-Limit"] == "3600"
    assert int(second.headers["RateLimit-Remaining"]) < int(first.headers["RateLimit-Remaining"])
    assert int(second.headers["RateLimit-Reset"]) >= int(first.headers["RateLimit-Reset"]) - 1


@pytest.mark.sim(rate_limit=3, rate_limit_refill=0.0)
def test_rate_limit_exhausted_real_bucket(sim, client):
    for _ in range(3):
        assert raw(sim, "GET", "/locations").status_code == 200
    resp = raw(sim, "GET", "/locations")
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert resp.headers["RateLimit-Remaining"] == "0"
    err = api_error(client.locations.get_all)  # hcloud retries 5 times, then gives up
    assert err.code == "rate_limit_exceeded"
    assert statuses(sim, "GET", "/locations")[-6:] == [429] * 6


def test_429_burst_is_retried_by_hcloud(sim, client):
    sim.faults.rate_limit(count=3, match="GET /servers")
    assert client.servers.get_all() == []
    assert statuses(sim, "GET", "/servers") == [429, 429, 429, 200]
    assert sim.faults.log[0] == ("GET", "/servers", "429 rate_limit_exceeded")


@pytest.mark.parametrize("status,retried", [(502, True), (504, True), (503, False), (500, False)])
def test_5xx_retry_policy(sim, client, status, retried):
    sim.faults.server_error(status, count=2, match="GET /locations")
    if retried:
        assert client.locations.get_all()
        assert statuses(sim, "GET", "/locations") == [status, status, 200]
    else:
        err = api_error(client.locations.get_all)
        assert err.code in ("unavailable", "server_error")
        assert statuses(sim, "GET", "/locations") == [status]


def test_raw_gateway_error_page(sim, client):
    sim.faults.server_error(502, count=1, raw=True)
    assert client.locations.get_all()  # integer 502 from a non-JSON page: retried
    assert statuses(sim) == [502, 200]
    assert sim.exchanges[0].response_headers["Content-Type"] == "text/html"


def test_conflict_is_retried(sim, client):
    sim.faults.conflict(count=2, match="POST /ssh_keys")
    assert client.ssh_keys.create(name="k", public_key=ssh_public_key(1)).id
    assert statuses(sim, "POST", "/ssh_keys") == [409, 409, 201]


def test_dropped_connection(sim, client):
    sim.faults.drop(match="POST /ssh_keys")
    with pytest.raises(requests.exceptions.ConnectionError):
        client.ssh_keys.create(name="k", public_key=ssh_public_key(1))
    assert sim.state.ssh_keys == {}  # dropped before processing
    assert client.ssh_keys.create(name="k", public_key=ssh_public_key(1)).name == "k"
    assert statuses(sim, "POST", "/ssh_keys") == [None, 201]


def test_dropped_answer_after_processing(sim, client):
    sim.faults.drop(match="POST /ssh_keys", processed=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.ssh_keys.create(name="k", public_key=ssh_public_key(1))
    assert len(sim.state.ssh_keys) == 1  # it happened, the answer was lost
    assert api_error(client.ssh_keys.create, name="k", public_key=ssh_public_key(1)).code == "uniqueness_error"


def test_slow_answer_and_client_timeout_retry(sim):
    sim.faults.delay(0.6, match="GET /locations")
    client = make_client(sim.url, timeout=0.2)
    assert client.locations.get_all()  # the first attempt times out, hcloud retries
    assert len([r for r in sim.requests if r.path == "/locations"]) == 2


def test_sequence_schedule(sim, client):
    sim.faults.sequence("GET /locations", [429, None, 503, "drop"])
    assert client.locations.get_all()  # 429 -> retried -> 200
    assert api_error(client.locations.get_all).code == "unavailable"
    with pytest.raises(requests.exceptions.ConnectionError):
        client.locations.get_all()
    assert client.locations.get_all()
    assert statuses(sim, "GET", "/locations") == [429, 200, 503, None, 200]


def test_after_and_every_schedule(sim, client):
    rule = sim.faults.rate_limit(count=2, match="GET /locations/*", after=1, every=2)
    for _ in range(6):
        client.locations.get_by_id(1)
    assert rule.fired == 2
    # every 2nd matching request after the first, twice; retries count as requests too
    assert statuses(sim, "GET", "/locations/1") == [200, 429, 200, 429, 200, 200, 200, 200]


def test_random_faults_are_reproducible():
    def run(seed):
        faults = Faults(seed=seed)
        faults.random_errors(0.3, statuses=(429, 502, 503, "drop"))
        return [(d.describe() if (d := faults.decide("GET", "/servers")) else None) for _ in range(200)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    hits = [x for x in run(7) if x]
    assert 30 < len(hits) < 90 and {"drop", "429 rate_limit_exceeded"} <= set(hits)


def test_slow_and_failing_actions(sim, client):
    sim.faults.slow_actions(0.3, command="create_server")
    sim.faults.fail_actions(command="start_server", code="action_failed", message="boot failed")
    resp = create_server(client, "flaky", wait=False)
    resp.action.wait_until_finished()
    polls = [r for r in sim.requests if r.path == f"/actions/{resp.action.id}"]
    assert len(polls) > 3  # polled while running
    with pytest.raises(ActionFailedException) as info:
        resp.next_actions[0].wait_until_finished()
    assert info.value.action.error == {"code": "action_failed", "message": "boot failed"}
    assert client.servers.get_by_id(resp.server.id).status == "off"


def test_actions_endpoint_by_ids(sim, client):
    resp = create_server(client, "acts")
    ids = [resp.action.id] + [a.id for a in resp.next_actions]
    body = raw(sim, "GET", "/actions", params={"id": ids}).json()
    assert [a["id"] for a in body["actions"]] == sorted(ids)
    assert all(a["status"] == "success" and a["progress"] == 100 for a in body["actions"])
    assert raw(sim, "GET", "/actions").status_code == 400
    assert client.servers.actions.get_by_id(resp.action.id).command == "create_server"
    assert api_error(client.actions.get_by_id, 1).code == "not_found"
