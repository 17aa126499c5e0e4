"""SSH keys: CRUD, fingerprint, uniqueness of name and key, invalid input."""

from __future__ import annotations

from .helpers import api_error, ssh_public_key


def test_create_get_update_list_delete(client):
    key = client.ssh_keys.create(name="deploy", public_key=ssh_public_key(1), labels={"app": "aini"})
    assert key.fingerprint.count(":") == 15
    assert client.ssh_keys.get_by_name("deploy").id == key.id
    assert client.ssh_keys.get_by_fingerprint(key.fingerprint).name == "deploy"
    updated = key.update(name="deploy2", labels={"app": "aini", "env": "test"})
    assert updated.name == "deploy2" and updated.labels == {"app": "aini", "env": "test"}
    assert [k.name for k in client.ssh_keys.get_all()] == ["deploy2"]
    assert key.delete() is True
    assert client.ssh_keys.get_all() == []
    assert api_error(client.ssh_keys.get_by_id, key.id).code == "not_found"


def test_uniqueness_of_name_and_public_key(client):
    client.ssh_keys.create(name="k1", public_key=ssh_public_key(1))
    err = api_error(client.ssh_keys.create, name="k1", public_key=ssh_public_key(2))
    assert err.code == "uniqueness_error" and err.details["fields"][0]["name"] == "name"
    err = api_error(client.ssh_keys.create, name="k2", public_key=ssh_public_key(1))
    assert err.code == "uniqueness_error" and err.details["fields"][0]["name"] == "public_key"


def test_invalid_public_key_and_labels(client):
    err = api_error(client.ssh_keys.create, name="bad", public_key="not a key")
    assert err.code == "invalid_input"
    assert err.details["fields"][0]["name"] == "public_key"
    err = api_error(client.ssh_keys.create, name="bad", public_key=ssh_public_key(3), labels={"-x": "y"})
    assert err.code == "invalid_input" and err.details["fields"][0]["name"] == "labels"
