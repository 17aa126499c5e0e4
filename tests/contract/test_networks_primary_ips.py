"""Networks with subnets/routes, server attachment; primary IPs."""

from __future__ import annotations

from hcloud.locations import Location
from hcloud.networks import NetworkRoute, NetworkSubnet

from .helpers import api_error, create_server


def test_network_subnets_routes_and_attachment(client):
    net = client.networks.create(name="backend", ip_range="10.10.0.0/16", labels={"app": "aini"},
                                 subnets=[NetworkSubnet(ip_range="10.10.1.0/24", network_zone="eu-central",
                                                        type="cloud")],
                                 routes=[NetworkRoute(destination="10.100.0.0/24", gateway="10.10.1.10")])
    assert net.subnets[0].gateway == "10.10.0.1"
    net.add_subnet(NetworkSubnet(ip_range=None, network_zone="us-east", type="cloud")).wait_until_finished()
    net.add_route(NetworkRoute(destination="10.200.0.0/24", gateway="10.10.1.11")).wait_until_finished()
    fresh = client.networks.get_by_id(net.id)
    assert [s.ip_range for s in fresh.subnets] == ["10.10.1.0/24", "10.10.0.0/24"]
    assert len(fresh.routes) == 2
    server = create_server(client, "net-member").server
    server.attach_to_network(fresh, ip="10.10.1.5").wait_until_finished()
    member = client.servers.get_by_id(server.id)
    assert member.private_net[0].ip == "10.10.1.5"
    assert api_error(server.attach_to_network, fresh).code == "server_already_attached"
    us = create_server(client, "us-member", server_type="cpx22", location="ash").server
    us.attach_to_network(fresh).wait_until_finished()
    assert client.servers.get_by_id(us.id).private_net[0].ip.startswith("10.10.0.")
    server.detach_from_network(fresh).wait_until_finished()
    assert client.servers.get_by_id(server.id).private_net == []
    net.delete_subnet(NetworkSubnet(ip_range="10.10.1.0/24")).wait_until_finished()
    net.change_protection(delete=True).wait_until_finished()
    assert api_error(net.delete).code == "protected"
    net.change_protection(delete=False).wait_until_finished()
    assert net.delete() is True
    assert client.servers.get_by_id(us.id).private_net == []  # detached automatically


def test_network_validation(client):
    assert api_error(client.networks.create, name="pub", ip_range="8.8.0.0/16").code == "invalid_input"
    client.networks.create(name="n1", ip_range="10.0.0.0/16")
    assert api_error(client.networks.create, name="n1", ip_range="10.1.0.0/16").code == "uniqueness_error"
    err = api_error(client.networks.create, name="n2", ip_range="10.0.0.0/16",
                    subnets=[NetworkSubnet(ip_range="192.168.0.0/24", network_zone="eu-central", type="cloud")])
    assert err.details["fields"][0]["name"] == "subnets[0].ip_range"


def test_primary_ip_lifecycle(client):
    resp = client.primary_ips.create(type="ipv4", name="edge-ip", location=Location(name="fsn1"),
                                     labels={"app": "aini"})
    ip = resp.primary_ip
    assert resp.action is None and ip.assignee_id is None and ip.auto_delete is False
    assert ip.location.name == "fsn1"
    server = create_server(client, "ip-host").server
    assert api_error(ip.assign, server.id, "server").code == "server_not_stopped"
    server.power_off().wait_until_finished()
    assert api_error(ip.assign, server.id, "server").code == "server_has_ipv4"
    auto = client.servers.get_by_id(server.id).public_net.primary_ipv4
    client.primary_ips.unassign(auto).wait_until_finished()
    ip.assign(server.id, "server").wait_until_finished()
    assert client.servers.get_by_id(server.id).public_net.ipv4.ip == ip.ip
    assert api_error(ip.delete).code == "must_be_unassigned"
    ip.change_dns_ptr(ip.ip, "edge.example.com").wait_until_finished()
    assert client.primary_ips.get_by_id(ip.id).dns_ptr == [{"ip": ip.ip, "dns_ptr": "edge.example.com"}]
    ip.update(auto_delete=True, name="edge-ip-2")
    assert client.primary_ips.get_by_name("edge-ip-2").auto_delete is True
    ip.unassign().wait_until_finished()
    assert ip.delete() is True
    v6 = client.primary_ips.create(type="ipv6", name="v6", location=Location(name="hel1")).primary_ip
    assert v6.ip.endswith("::/64")
