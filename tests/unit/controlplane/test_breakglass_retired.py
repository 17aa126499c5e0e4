"""Keys that are replaced are retired, not lost: a restore of the earlier Vault or Consul
onto a new one needs them (recovery onto a new server)."""

from __future__ import annotations

from aini.controlplane import breakglass
from aini.controlplane.breakglass import BreakGlass

PASSPHRASE = "a long enough test passphrase"


def test_new_keys_retire_the_old_ones_and_the_same_keys_retire_nothing():
    first = BreakGlass(("k1", "k2"), "root-1", "consul-1")
    assert first.replace(vault_unseal_keys=("k1", "k2"), vault_root_token="root-1") == first
    second = first.replace(vault_unseal_keys=("k3", "k4"), vault_root_token="root-2")
    assert second.retired_vaults == ((("k1", "k2"), "root-1"),) and second.retired_consuls == ()
    third = second.replace(consul_bootstrap_token="consul-2")
    assert third.retired_consuls == ("consul-1",) and third.retired_vaults == second.retired_vaults
    assert BreakGlass().replace(vault_unseal_keys=("k",), consul_bootstrap_token="c") == BreakGlass(("k",), None, "c")


def test_only_the_last_few_are_kept():
    material = BreakGlass(("k0",), "r0")
    for n in range(1, 6):
        material = material.replace(vault_unseal_keys=(f"k{n}",), vault_root_token=f"r{n}")
    assert [keys for keys, _ in material.retired_vaults] == [("k2",), ("k3",), ("k4",)]


def test_bringing_one_back_retires_the_current_in_its_place():
    material = BreakGlass(("new",), "root-new", "c-new", ((("old",), "root-old"),), ("c-old",))
    back = material.vault_back(0).consul_back(0)
    assert (back.vault_unseal_keys, back.vault_root_token, back.consul_bootstrap_token) == (("old",), "root-old", "c-old")
    assert back.retired_vaults == ((("new",), "root-new"),) and back.retired_consuls == ("c-new",)


def test_retired_keys_are_encrypted_with_the_rest_and_read_back_and_older_files_read_as_none_retired():
    material = BreakGlass(("k3",), "root-2", "c", ((("k1", "k2"), "root-1"),), ("c-old",))
    data = breakglass.encrypt(material, PASSPHRASE, n=2**14)
    assert b"root-1" not in data and b"c-old" not in data
    assert breakglass.decrypt(data, PASSPHRASE) == material
    assert "<1 retired Vaults, 1 retired Consuls>" in repr(material) and "root-1" not in repr(material)
    legacy = breakglass._material(b'{"vault": {"unseal_keys": ["k"], "root_token": "r"}, "consul": {"bootstrap_token": null}}',
                                  "x")
    assert legacy == BreakGlass(("k",), "r", None)
