"""Volumes: create (with location or server), attach/detach, resize, protection, delete."""

from __future__ import annotations

import pytest
from hcloud.locations import Location

from .helpers import api_error, create_server


def test_volume_lifecycle(client):
    server = create_server(client, "vol-host").server
    resp = client.volumes.create(size=10, name="data", location=Location(name="fsn1"), format="xfs",
                                 labels={"app": "aini"})
    assert resp.volume.status == "creating" and resp.next_actions == []
    resp.action.wait_until_finished()
    vol = client.volumes.get_by_id(resp.volume.id)
    assert (vol.status, vol.size, vol.format, vol.server) == ("available", 10, "xfs", None)
    assert vol.linux_device.endswith(f"HC_Volume_{vol.id}")
    vol.attach(server, automount=False).wait_until_finished()
    assert client.volumes.get_by_id(vol.id).server.id == server.id
    assert api_error(vol.delete).code == "resource_in_use"
    assert api_error(vol.attach, server).code == "volume_already_attached"
    vol.resize(20).wait_until_finished()
    assert client.volumes.get_by_id(vol.id).size == 20
    assert api_error(vol.resize, 15).code == "invalid_input"
    vol.detach().wait_until_finished()
    vol.change_protection(delete=True).wait_until_finished()
    assert api_error(vol.delete).code == "protected"
    vol.change_protection(delete=False).wait_until_finished()
    assert vol.delete() is True
    assert client.volumes.get_all() == []


def test_create_attached_to_server(client):
    server = create_server(client, "vol-direct").server
    resp = client.volumes.create(size=15, name="direct", server=server, automount=True, format="ext4")
    assert [a.command for a in resp.next_actions] == ["attach_volume"]
    resp.action.wait_until_finished()
    resp.next_actions[0].wait_until_finished()
    assert client.volumes.get_by_id(resp.volume.id).location.name == "fsn1"
    assert [v.id for v in client.servers.get_by_id(server.id).volumes] == [resp.volume.id]


def test_volume_validation(client):
    assert api_error(client.volumes.create, size=5, name="tiny", location=Location(name="fsn1")).code == "invalid_input"
    assert api_error(client.volumes.create, size=10, name="-bad-", location=Location(name="fsn1")).code \
        == "invalid_input"
    client.volumes.create(size=10, name="same", location=Location(name="fsn1"))
    assert api_error(client.volumes.create, size=10, name="same", location=Location(name="nbg1")).code \
        == "uniqueness_error"
    other = create_server(client, "elsewhere", location="hel1").server
    vol = client.volumes.get_by_name("same")
    assert api_error(vol.attach, other).code == "invalid_input"  # different location


@pytest.mark.sim(action_delay=0.5)
def test_volume_locked_while_creating(client):
    vol = client.volumes.create(size=10, name="slow", location=Location(name="fsn1")).volume
    assert api_error(vol.resize, 20).code == "locked"
