"""Servers: create options, status transitions, power actions, locks, delete, hooks."""

from __future__ import annotations

import pytest
from hcloud.firewalls import Firewall, FirewallRule
from hcloud.networks import Network, NetworkSubnet
from hcloud.primary_ips import PrimaryIP
from hcloud.servers import ServerCreatePublicNetwork
from hcloud.ssh_keys import SSHKey
from hcloud.volumes import Volume
from hcloud.locations import Location

from .helpers import api_error, create_server, ssh_public_key


def test_create_with_everything(client, sim):
    key = client.ssh_keys.create(name="admin", public_key=ssh_public_key("admin"))
    fw = client.firewalls.create(name="web", rules=[
        FirewallRule(direction="in", protocol="tcp", port="443", source_ips=["0.0.0.0/0", "::/0"])]).firewall
    net = client.networks.create(name="private", ip_range="10.0.0.0/16", subnets=[
        NetworkSubnet(ip_range="10.0.1.0/24", network_zone="eu-central", type="cloud")])
    vol = client.volumes.create(size=10, name="data", location=Location(name="fsn1"), format="ext4").volume
    user_data = "#cloud-config\nusers:\n  - name: aini\n"

    resp = create_server(client, "app-1", ssh_keys=[SSHKey(name="admin")], firewalls=[Firewall(id=fw.id)],
                         networks=[Network(id=net.id)], volumes=[Volume(id=vol.id)],
                         user_data=user_data, labels={"app": "aini", "role": "app"}, wait=False)
    assert resp.root_password is None  # ssh keys given
    assert resp.server.status == "initializing" and resp.action.command == "create_server"
    assert {a.command for a in resp.next_actions} == {"start_server", "attach_to_network", "attach_volume",
                                                       "apply_firewall"}
    resp.action.wait_until_finished()
    for action in resp.next_actions:
        action.wait_until_finished()

    server = client.servers.get_by_id(resp.server.id)
    assert server.status == "running"
    assert server.labels == {"app": "aini", "role": "app"}
    assert server.public_net.ipv4.ip and server.public_net.ipv6.ip.endswith("/64")
    assert [f.firewall.id for f in server.public_net.firewalls] == [fw.id]
    assert server.private_net[0].network.id == net.id and server.private_net[0].ip.startswith("10.0.1.")
    assert [v.id for v in server.volumes] == [vol.id]
    assert server.server_type.name == "cx23" and server.location.name == "fsn1"
    assert server.image.name == "debian-12" and server.image.architecture == "x86"
    stored = sim.state.servers[server.id]
    assert stored["_user_data"] == user_data and stored["_ssh_keys"] == [key.public_key]
    assert client.networks.get_by_id(net.id).servers[0].id == server.id


def test_root_password_without_ssh_keys_and_stopped_create(client):
    resp = create_server(client, "nokeys", start_after_create=False)
    assert isinstance(resp.root_password, str) and resp.root_password
    assert [a.command for a in resp.next_actions] == []
    assert client.servers.get_by_id(resp.server.id).status == "off"


def test_status_goes_initializing_then_running(client):
    resp = create_server(client, "slow", wait=False)
    assert client.servers.get_by_id(resp.server.id).status in ("initializing", "starting")
    resp.action.wait_until_finished()
    resp.next_actions[0].wait_until_finished()
    assert client.servers.get_by_id(resp.server.id).status == "running"


def test_power_actions(client):
    server = create_server(client, "power").server
    for method, expected, command in (("power_off", "off", "stop_server"), ("power_on", "running", "start_server"),
                                      ("shutdown", "off", "shutdown_server"), ("power_on", "running", "start_server"),
                                      ("reboot", "running", "reboot_server"), ("reset", "running", "reset_server")):
        action = getattr(server, method)()
        assert action.command == command
        action.wait_until_finished()
        assert action.status == "success"
        assert client.servers.get_by_id(server.id).status == expected
    actions = server.get_actions()
    assert {"create_server", "start_server", "stop_server", "reboot_server"} <= {a.command for a in actions}
    assert client.servers.get_actions_list(server, status=["success"]).actions


@pytest.mark.sim(action_delay=0.5)
def test_locked_while_an_action_runs(client):
    server = create_server(client, "busy", wait=False).server
    err = api_error(server.power_off)
    assert err.code == "locked"
    assert client.servers.get_by_id(server.id).locked is True
    server.update(labels={"still": "editable"})  # PUT is not an action


def test_delete_releases_resources(client, sim):
    deleted = []
    sim.on_server_delete = lambda s: deleted.append(s["id"])
    server = create_server(client, "gone").server
    ipv4_id = client.servers.get_by_id(server.id).public_net.primary_ipv4.id
    action = server.delete()
    assert action.command == "delete_server"
    action.wait_until_finished()
    assert deleted == [server.id]
    assert api_error(client.servers.get_by_id, server.id).code == "not_found"
    assert api_error(client.primary_ips.get_by_id, ipv4_id).code == "not_found"  # auto_delete
    assert client.actions.get_by_id(action.id).status == "success"


def test_delete_protection(client):
    server = create_server(client, "protected").server
    server.change_protection(delete=True, rebuild=True).wait_until_finished()
    assert api_error(server.delete).code == "protected"
    assert api_error(server.rebuild, image=client.images.get_by_name_and_architecture("debian-12", "x86")).code \
        == "protected"
    server.change_protection(delete=False).wait_until_finished()
    server.delete().wait_until_finished()


def test_primary_ips_in_public_net(client):
    ip = client.primary_ips.create(type="ipv4", name="fixed", location=Location(name="nbg1")).primary_ip
    resp = create_server(client, "fixed-ip", location="nbg1",
                         public_net=ServerCreatePublicNetwork(ipv4=PrimaryIP(id=ip.id), enable_ipv6=False))
    server = client.servers.get_by_id(resp.server.id)
    assert server.public_net.ipv4.ip == ip.ip and server.public_net.ipv6 is None
    assert client.primary_ips.get_by_id(ip.id).assignee_id == server.id
    server.delete().wait_until_finished()
    assert client.primary_ips.get_by_id(ip.id).assignee_id is None  # not auto_delete: kept
    err = api_error(create_server, client, "wrong-dc", location="hel1",
                    public_net=ServerCreatePublicNetwork(ipv4=PrimaryIP(id=ip.id)))
    assert err.code == "primary_ip_datacenter_mismatch"


def test_server_type_availability_is_enforced(client):
    err = api_error(create_server, client, "hel-big", server_type="cx53", location="hel1")
    assert err.code == "resource_unavailable"
    assert api_error(create_server, client, "us-cx", server_type="cx23", location="ash").code == "resource_unavailable"
    assert api_error(create_server, client, "legacy", server_type="cx22").code == "resource_unavailable"
    # deprecated but still orderable
    assert create_server(client, "sin-big", server_type="cpx62", location="sin").server.id
    # Arm type picks the Arm image of the same name
    arm = create_server(client, "arm", server_type="cax11").server
    assert client.servers.get_by_id(arm.id).image.architecture == "arm"


def test_create_validation_and_uniqueness(client):
    create_server(client, "dup")
    err = api_error(create_server, client, "dup")
    assert err.code == "uniqueness_error" and err.details == {"fields": [{"name": "name"}]}
    err = api_error(create_server, client, "not_a_hostname!")
    assert err.code == "invalid_input" and err.details["fields"][0]["name"] == "name"
    assert api_error(create_server, client, "x1", server_type="nope").code == "invalid_input"
    assert api_error(create_server, client, "x2", image="windows-95").code == "invalid_input"
    err = api_error(create_server, client, "x3", ssh_keys=[SSHKey(name="missing")])
    assert err.details["fields"][0]["name"] == "ssh_keys"
    assert api_error(create_server, client, "x4", user_data="x" * 40000).code == "invalid_input"


@pytest.mark.sim(server_limit=2)
def test_server_quota(client):
    create_server(client, "q1")
    create_server(client, "q2")
    err = api_error(create_server, client, "q3")
    assert err.code == "resource_limit_exceeded"
    assert err.details == {"limits": [{"name": "server_limit"}]}


def test_on_server_create_hook_sets_reachable_address(client, sim):
    seen = []

    def backing(server):
        seen.append(server["name"])
        server["public_net"]["ipv4"]["ip"] = "127.0.0.1"

    sim.on_server_create = backing
    server = create_server(client, "sandbox-1").server
    assert seen == ["sandbox-1"]
    assert client.servers.get_by_id(server.id).public_net.ipv4.ip == "127.0.0.1"
    assert client.primary_ips.get_list(ip="127.0.0.1").primary_ips[0].assignee_id == server.id


def test_update_rename_and_type_change(client):
    server = create_server(client, "resize").server
    server.update(name="resized")
    assert client.servers.get_by_name("resized").id == server.id
    assert api_error(server.change_type, client.server_types.get_by_name("cx33"), upgrade_disk=True).code \
        == "server_not_stopped"
    server.power_off().wait_until_finished()
    server.change_type(client.server_types.get_by_name("cx33"), upgrade_disk=True).wait_until_finished()
    fresh = client.servers.get_by_id(server.id)
    assert fresh.server_type.name == "cx33" and fresh.primary_disk_size == 80


def test_rebuild_rescue_backup_and_dns_ptr(client):
    server = create_server(client, "misc").server
    image = client.images.get_by_name_and_architecture("ubuntu-24.04", "x86")
    resp = server.rebuild(image)
    resp.action.wait_until_finished()
    assert client.servers.get_by_id(server.id).image.name == "ubuntu-24.04"
    server.enable_backup().wait_until_finished()
    assert client.servers.get_by_id(server.id).backup_window
    rescue = server.enable_rescue(type="linux64")
    assert rescue.root_password
    ip = client.servers.get_by_id(server.id).public_net.ipv4.ip
    server.change_dns_ptr(ip, "app.example.com").wait_until_finished()
    assert client.servers.get_by_id(server.id).public_net.ipv4.dns_ptr == "app.example.com"
