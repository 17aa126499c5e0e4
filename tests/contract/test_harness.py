"""The harness itself: label selector parsing, the OpenAPI validator (negative control),
the action engine with a fake clock, and the standalone command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.harness.hcloud_sim import Simulator, selectors
from tests.harness.hcloud_sim.server import Exchange

from .conftest import make_client
from .helpers import create_server
from .openapi_validation import ResponseValidator

REPO = Path(__file__).resolve().parents[2]

label_key = st.from_regex(r"\A[a-z][a-z0-9]{0,8}\Z")
label_value = st.from_regex(r"\A[a-z0-9]{1,8}\Z")


@given(st.dictionaries(label_key, label_value, max_size=4), label_key, label_value)
def test_selector_semantics(labels, key, value):
    has = key in labels
    assert selectors.matches(f"{key}={value}", labels) == (has and labels[key] == value)
    assert selectors.matches(f"{key}!={value}", labels) == (not has or labels[key] != value)
    assert selectors.matches(key, labels) == has
    assert selectors.matches(f"!{key}", labels) == (not has)
    assert selectors.matches(f"{key} in ({value},zz)", labels) == (has and labels[key] in (value, "zz"))
    assert selectors.matches(f"{key} notin ({value})", labels) == (not has or labels[key] != value)
    assert selectors.matches(f"{key},!{key}", labels) is False


@pytest.mark.parametrize("bad", ["", "a=b=c", "k in (a", "k in a,b)", "k=(x)", "=v", "k,,j", "k in ()x"])
def test_selector_syntax_errors(bad):
    with pytest.raises(ValueError):
        selectors.parse(bad)


def test_label_validation():
    assert selectors.label_errors({"app": "aini", "example.com/tier": "web-1", "empty": ""}) == []
    assert selectors.label_errors({"bad key": "x"})
    assert selectors.label_errors({"k": "-x"})
    assert selectors.label_errors({"hetzner.cloud/x": "y"})


def test_validator_rejects_a_broken_answer(openapi):
    validator = ResponseValidator(openapi)
    good = {"ssh_key": {"id": 1, "name": "k", "fingerprint": "aa", "public_key": "ssh-ed25519 AAAA",
                        "labels": {}, "created": "2026-01-01T00:00:00+00:00"}}
    for body, status in ((good, 200), ({"ssh_key": {"id": "one"}}, 200), ({"error": {"message": "x"}}, 404)):
        validator(Exchange("GET", "/v1/ssh_keys/1", {}, {}, b"", status,
                           {"Content-Type": "application/json"}, json.dumps(body).encode()))
    assert validator.checked == 3 and len(validator.failures) == 2
    assert "required property" in validator.failures[0] and "code" in validator.failures[1]


def test_action_engine_with_a_fake_clock(openapi):
    now = [1_000_000.0]
    sim = Simulator(token="T", action_delay=30.0, clock=lambda: now[0])
    validator = ResponseValidator(openapi)
    sim.observers.append(validator)
    with sim:
        client = make_client(sim.url, token="T")
        resp = create_server(client, "clocked", wait=False)
        assert client.actions.get_by_id(resp.action.id).status == "running"
        now[0] += 15
        assert client.actions.get_by_id(resp.action.id).progress == 50
        now[0] += 15
        assert client.actions.get_by_id(resp.action.id).status == "success"
        assert client.servers.get_by_id(resp.server.id).status == "starting"
        now[0] += 30
        assert client.servers.get_by_id(resp.server.id).status == "running"
    assert validator.checked >= 6 and validator.failures == []


def test_standalone_command_line(openapi):
    proc = subprocess.Popen([sys.executable, "-m", "tests.harness.hcloud_sim", "--port", "0", "--token", "cli-token",
                             "--action-delay", "0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = proc.stdout.readline()
        url = line.split()[4]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        resp = requests.get(url + "/locations", headers={"Authorization": "Bearer cli-token"}, timeout=10)
        assert resp.status_code == 200 and resp.json()["locations"][0]["name"] == "fsn1"
        validator = ResponseValidator(openapi)
        validator(Exchange("GET", "/v1/locations", {}, {}, b"", resp.status_code, dict(resp.headers), resp.content))
        assert validator.failures == []
        assert make_client(url, token="cli-token").server_types.get_by_name("cx23").cores == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
