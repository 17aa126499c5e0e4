"""Firewalls: rules, apply_to (server, label selector), apply/remove/set_rules, errors."""

from __future__ import annotations

from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule

from .helpers import api_error, create_server

SSH = FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["0.0.0.0/0", "::/0"], description="ssh")
HTTPS = FirewallRule(direction="in", protocol="tcp", port="443", source_ips=["0.0.0.0/0", "::/0"])
PING = FirewallRule(direction="in", protocol="icmp", source_ips=["0.0.0.0/0"])


def by_server(server):
    return FirewallResource(type="server", server=server)


def by_selector(selector):
    return FirewallResource(type="label_selector", label_selector=FirewallResourceLabelSelector(selector=selector))


def test_create_with_rules_and_apply_to(client):
    web = create_server(client, "web-1", labels={"role": "web"}).server
    db = create_server(client, "db-1", labels={"role": "db"}).server
    resp = client.firewalls.create(name="edge", rules=[SSH, HTTPS, PING], labels={"app": "aini"},
                                   resources=[by_server(db), by_selector("role=web")])
    for action in resp.actions:
        action.wait_until_finished()
    assert {a.command for a in resp.actions} == {"set_firewall_rules", "apply_firewall"}
    fw = client.firewalls.get_by_id(resp.firewall.id)
    assert [(r.protocol, r.port) for r in fw.rules] == [("tcp", "22"), ("tcp", "443"), ("icmp", None)]
    assert fw.rules[0].description == "ssh"
    selector_entry = next(a for a in fw.applied_to if a.type == "label_selector")
    assert [r.server.id for r in selector_entry.applied_to_resources] == [web.id]
    assert [f.firewall.id for f in client.servers.get_by_id(web.id).public_net.firewalls] == [fw.id]
    # a server created later with a matching label is covered by the selector too
    web2 = create_server(client, "web-2", labels={"role": "web"}).server
    assert [f.firewall.id for f in client.servers.get_by_id(web2.id).public_net.firewalls] == [fw.id]


def test_set_rules_apply_remove(client):
    server = create_server(client, "fw-target").server
    fw = client.firewalls.create(name="rules").firewall
    for action in fw.set_rules([SSH]):
        action.wait_until_finished()
    assert [r.port for r in client.firewalls.get_by_id(fw.id).rules] == ["22"]
    for action in fw.apply_to_resources([by_server(server)]):
        action.wait_until_finished()
    assert api_error(fw.apply_to_resources, [by_server(server)]).code == "firewall_already_applied"
    assert api_error(fw.delete).code == "resource_in_use"
    actions = fw.set_rules([SSH, HTTPS])
    assert {a.command for a in actions} == {"set_firewall_rules", "apply_firewall"}
    for action in actions:
        action.wait_until_finished()
    for action in fw.remove_from_resources([by_server(server)]):
        action.wait_until_finished()
    assert api_error(fw.remove_from_resources, [by_server(server)]).code == "firewall_already_removed"
    assert fw.delete() is True
    assert client.firewalls.get_all() == []


def test_label_selector_managed_server_cannot_be_removed_directly(client):
    server = create_server(client, "managed", labels={"fw": "yes"}).server
    fw = client.firewalls.create(name="by-label", resources=[by_selector("fw=yes")]).firewall
    err = api_error(fw.remove_from_resources, [by_server(server)])
    assert err.code == "firewall_managed_by_label_selector"


def test_invalid_rules_and_resources(client):
    err = api_error(client.firewalls.create, name="bad", rules=[
        FirewallRule(direction="in", protocol="tcp", source_ips=["0.0.0.0/0"])])  # no port
    assert err.code == "invalid_input" and err.details["fields"][0]["name"] == "rules[0].port"
    err = api_error(client.firewalls.create, name="bad", rules=[
        FirewallRule(direction="in", protocol="udp", port="53", source_ips=["not-a-cidr"])])
    assert err.details["fields"][0]["name"] == "rules[0].source_ips"
    from hcloud.servers import Server
    err = api_error(client.firewalls.create, name="bad", resources=[by_server(Server(id=424242))])
    assert err.code == "firewall_resource_not_found"
    client.firewalls.create(name="dup")
    assert api_error(client.firewalls.create, name="dup").code == "uniqueness_error"


def test_update_and_firewall_actions(client):
    fw = client.firewalls.create(name="old", rules=[SSH]).firewall
    fw.update(name="new", labels={"k": "v"})
    fresh = client.firewalls.get_by_name("new")
    assert fresh.labels == {"k": "v"}
    actions = fresh.get_actions()
    assert [a.command for a in actions] == ["set_firewall_rules"]
    assert client.firewalls.actions.get_by_id(actions[0].id).id == actions[0].id
