"""Locations, data centers, server types (prices, availability), images."""

from __future__ import annotations

import warnings
from decimal import Decimal

from .helpers import api_error


def test_locations_and_get_by_name(client):
    locations = client.locations.get_all()
    assert {loc.name for loc in locations} >= {"fsn1", "nbg1", "hel1", "ash", "hil", "sin"}
    fsn1 = client.locations.get_by_name("fsn1")
    assert fsn1.network_zone == "eu-central" and fsn1.country == "DE"
    assert client.locations.get_by_id(fsn1.id).city == "Falkenstein"


def test_datacenters_and_server_type_availability(client):
    with warnings.catch_warnings():  # data centers are deprecated in hcloud-python 2.2x
        warnings.simplefilter("ignore", DeprecationWarning)
        page = client.datacenters.get_list()
        hel = client.datacenters.get_by_name("hel1-dc2")
        supported = [st.id for st in hel.server_types.supported]
        available = [st.id for st in hel.server_types.available]
    assert page.datacenters and hel.location.name == "hel1"
    cx53 = client.server_types.get_by_name("cx53")
    assert cx53.id in supported and cx53.id not in available


def test_server_types_prices_are_decimal_strings_per_location(client):
    cx23 = client.server_types.get_by_name("cx23")
    assert (cx23.cores, cx23.memory, cx23.disk, cx23.architecture) == (2, 4.0, 40, "x86")
    prices = {p["location"]: p for p in cx23.prices}
    assert set(prices) == {"fsn1", "nbg1", "hel1"}
    monthly = prices["fsn1"]["price_monthly"]
    assert isinstance(monthly["net"], str) and isinstance(monthly["gross"], str)
    assert Decimal(monthly["gross"]) > Decimal(monthly["net"]) > 0
    assert prices["fsn1"]["included_traffic"] > 0
    for name, cores in (("cx33", 4), ("cx43", 8), ("cx53", 16), ("cax11", 2), ("cpx22", 2)):
        assert client.server_types.get_by_name(name).cores == cores


def test_server_type_availability_and_deprecation_per_location(client):
    cx53 = client.server_types.get_by_name("cx53")
    by_loc = {sl.location.name: sl for sl in cx53.locations}
    assert by_loc["fsn1"].deprecation is None and by_loc["fsn1"].available
    assert by_loc["hel1"].deprecation is not None and not by_loc["hel1"].available
    cpx62 = {sl.location.name: sl for sl in client.server_types.get_by_name("cpx62").locations}
    assert cpx62["sin"].deprecation is not None and cpx62["sin"].available
    legacy = client.server_types.get_by_name("cx22")
    assert all(sl.deprecation is not None and not sl.available for sl in legacy.locations)
    assert "ash" not in {sl.location.name for sl in cx53.locations}


def test_images_by_name_and_architecture(client):
    x86 = client.images.get_by_name_and_architecture("debian-12", "x86")
    arm = client.images.get_by_name_and_architecture("debian-12", "arm")
    assert x86.id != arm.id and (x86.os_flavor, x86.os_version) == ("debian", "12")
    assert client.images.get_by_name_and_architecture("ubuntu-24.04", "x86").type == "system"
    names = {i.name for i in client.images.get_all(type=["system"])}
    assert names == {"debian-12", "ubuntu-24.04"}  # deprecated images are hidden by default
    old = client.images.get_all(name="debian-11", include_deprecated=True)
    assert len(old) == 1 and old[0].deprecation is not None


def test_catalog_not_found(client):
    err = api_error(client.server_types.get_by_id, 999999)
    assert err.code == "not_found"
    assert client.server_types.get_by_name("cx99") is None
