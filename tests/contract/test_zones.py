"""DNS zones and RRSets (Cloud DNS API)."""

from __future__ import annotations

import pytest
from hcloud.zones import Zone, ZonePrimaryNameserver, ZoneRecord, ZoneRRSet

from .helpers import api_error


@pytest.fixture
def zone(client):
    resp = client.zones.create(name="aini.example", mode="primary", ttl=600, labels={"app": "aini"})
    resp.action.wait_until_finished()
    return client.zones.get(resp.zone.id)


def test_zone_defaults_and_lookup_by_name(client, zone):
    assert zone.ttl == 600 and zone.mode == "primary" and zone.status == "ok"
    assert len(zone.authoritative_nameservers.assigned) == 3
    assert client.zones.get("aini.example").id == zone.id
    rrsets = {(r.name, r.type) for r in zone.get_rrset_all()}
    assert rrsets == {("@", "SOA"), ("@", "NS")}
    assert zone.record_count == 4
    assert client.zones.get_all(label_selector="app=aini")[0].id == zone.id
    err = api_error(client.zones.create, name="aini.example", mode="primary")
    assert err.code == "uniqueness_error"
    assert api_error(client.zones.get, "missing.example").code == "not_found"


def test_rrset_create_get_update_records(client, zone):
    resp = zone.create_rrset(name="www", type="A", ttl=300, labels={"svc": "web"},
                             records=[ZoneRecord("198.51.100.10", comment="web")])
    resp.action.wait_until_finished()
    rrset = client.zones.get_rrset(Zone(name="aini.example"), "www", "A")
    assert rrset.id == "www/A" and rrset.ttl == 300 and rrset.records[0].comment == "web"
    rrset.add_rrset_records([ZoneRecord("198.51.100.11")]).wait_until_finished()
    assert [r.value for r in zone.get_rrset("www", "A").records] == ["198.51.100.10", "198.51.100.11"]
    rrset.update_rrset_records([ZoneRecord("198.51.100.11", comment="second")]).wait_until_finished()
    rrset.remove_rrset_records([ZoneRecord("198.51.100.10")]).wait_until_finished()
    fresh = zone.get_rrset("www", "A")
    assert [(r.value, r.comment) for r in fresh.records] == [("198.51.100.11", "second")]
    fresh.set_rrset_records([ZoneRecord("203.0.113.7")]).wait_until_finished()
    fresh.change_rrset_ttl(None).wait_until_finished()
    fresh.update_rrset(labels={"svc": "web2"})
    final = zone.get_rrset("www", "A")
    assert final.ttl is None and final.labels == {"svc": "web2"} and final.records[0].value == "203.0.113.7"
    # removing the last record deletes the RRSet
    final.remove_rrset_records([ZoneRecord("203.0.113.7")]).wait_until_finished()
    assert api_error(zone.get_rrset, "www", "A").code == "not_found"


def test_add_records_creates_rrset_and_filters(client, zone):
    client.zones.add_rrset_records(ZoneRRSet(zone=zone, name="mail", type="MX"),
                                   records=[ZoneRecord("10 mx.aini.example.")], ttl=3600).wait_until_finished()
    zone.create_rrset(name="_dmarc", type="TXT", records=[ZoneRecord('"v=DMARC1; p=none"')])
    zone.create_rrset(name="app", type="CNAME", records=[ZoneRecord("www.aini.example.")])
    names = [r.name for r in zone.get_rrset_all(type=["TXT", "MX"])]
    assert sorted(names) == ["_dmarc", "mail"]
    assert [r.type for r in zone.get_rrset_all(name="app")] == ["CNAME"]


def test_rrset_validation_and_protection(client, zone):
    assert api_error(zone.create_rrset, name="bad", type="A", records=[ZoneRecord("not-an-ip")]).code \
        == "invalid_input"
    err = api_error(zone.create_rrset, name="txt", type="TXT", records=[ZoneRecord("unquoted")])
    assert err.details["fields"][0]["name"] == "records[0].value"
    assert api_error(zone.create_rrset, name="www.aini.example", type="A",
                     records=[ZoneRecord("192.0.2.1")]).code == "invalid_input"
    zone.create_rrset(name="www", type="AAAA", records=[ZoneRecord("2001:db8::1")]).action.wait_until_finished()
    assert api_error(zone.create_rrset, name="www", type="AAAA", records=[ZoneRecord("2001:db8::2")]).code \
        == "uniqueness_error"
    rrset = zone.get_rrset("www", "AAAA")
    rrset.change_rrset_protection(change=True).wait_until_finished()
    assert api_error(rrset.set_rrset_records, [ZoneRecord("2001:db8::3")]).code == "protected"
    assert api_error(rrset.delete_rrset).code == "protected"
    rrset.change_rrset_protection(change=False).wait_until_finished()
    rrset.delete_rrset().action.wait_until_finished()


def test_zone_actions_zonefile_and_delete(client, zone, sim):
    sim.faults.slow_actions(60, command="create_rrset")
    resp = zone.create_rrset(name="www", type="A", records=[ZoneRecord("192.0.2.10", comment="lb")])
    assert api_error(zone.change_ttl, 7200).code == "locked"  # the zone's create_rrset action runs
    sim.state.settle()  # finish running actions now
    resp.action.wait_until_finished()
    zone.change_ttl(7200).wait_until_finished()
    text = zone.export_zonefile().zonefile
    assert "$ORIGIN aini.example." in text and "www IN A 192.0.2.10 ; lb" in text
    zone.import_zonefile("$ORIGIN aini.example.\n$TTL 3600\n@ IN NS hydrogen.ns.hetzner.com.\n"
                         "api 300 IN A 192.0.2.20\n").wait_until_finished()
    assert {(r.name, r.type) for r in zone.get_rrset_all()} == {("@", "SOA"), ("@", "NS"), ("api", "A")}
    assert client.zones.get(zone.id).ttl == 3600
    zone.update(labels={"app": "aini", "env": "test"})
    zone.change_protection(delete=True).wait_until_finished()
    assert api_error(zone.delete).code == "protected"
    zone.change_protection(delete=False).wait_until_finished()
    assert {a.command for a in zone.get_actions()} >= {"create_zone", "change_ttl", "import_zonefile"}
    zone.delete().action.wait_until_finished()
    assert client.zones.get_all() == []


def test_secondary_zone(client):
    resp = client.zones.create(name="secondary.example", mode="secondary",
                               primary_nameservers=[ZonePrimaryNameserver(address="192.0.2.53")])
    zone = resp.zone
    assert zone.primary_nameservers[0].address == "192.0.2.53"
    assert api_error(zone.get_rrset_all).code == "incorrect_zone_mode"
    zone.change_primary_nameservers([ZonePrimaryNameserver(address="192.0.2.54", port=5353)]).wait_until_finished()
    assert client.zones.get(zone.id).primary_nameservers[0].port == 5353
