"""The real ``hetzner.hcloud`` Ansible modules (the collection bundled with the ``ansible``
package in the venv) against the simulator: a provisioning playbook run twice; the second
run must change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import TOKEN
from .helpers import ssh_public_key

VENV_BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = VENV_BIN / "ansible-playbook"


def playbook(endpoint: str) -> list[dict]:
    hc = "hetzner.hcloud."
    return [{
        "name": "provision an AINI host",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "module_defaults": {f"group/{hc}all": {"api_token": TOKEN, "api_endpoint": endpoint}},
        "tasks": [
            {"name": "ssh key", f"{hc}ssh_key": {"name": "aini-deploy", "public_key": ssh_public_key("ansible"),
                                                 "labels": {"app": "aini"}}},
            {"name": "firewall", f"{hc}firewall": {"name": "aini-web", "labels": {"app": "aini"}, "rules": [
                {"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0", "::/0"],
                 "description": "ssh"},
                {"direction": "in", "protocol": "tcp", "port": "80", "source_ips": ["0.0.0.0/0", "::/0"]},
                {"direction": "in", "protocol": "tcp", "port": "443", "source_ips": ["0.0.0.0/0", "::/0"]},
                {"direction": "in", "protocol": "icmp", "source_ips": ["0.0.0.0/0", "::/0"]},
            ]}},
            {"name": "server", f"{hc}server": {
                "name": "aini-1", "server_type": "cx23", "image": "debian-12", "location": "fsn1",
                "ssh_keys": ["aini-deploy"], "firewalls": ["aini-web"],
                "labels": {"app": "aini", "role": "workspace"}, "state": "present",
                "user_data": "#cloud-config\nssh_pwauth: false\ndisable_root: true\n"},
             "register": "server"},
            {"name": "server info", f"{hc}server_info": {"label_selector": "app=aini"}, "register": "info"},
            {"name": "check server info", "ansible.builtin.assert": {"that": [
                "info.hcloud_server_info | length == 1",
                "info.hcloud_server_info[0].status == 'running'",
                "info.hcloud_server_info[0].ipv4_address == server.hcloud_server.ipv4_address",
                "info.hcloud_server_info[0].labels.role == 'workspace'",
                "info.hcloud_server_info[0].location == 'fsn1'",
            ]}},
            {"name": "zone", f"{hc}zone": {"name": "aini.example", "mode": "primary", "ttl": 3600,
                                           "labels": {"app": "aini"}}},
            {"name": "A record", f"{hc}zone_rrset": {
                "zone": "aini.example", "name": "chat", "type": "A", "ttl": 300,
                "records": [{"value": "{{ server.hcloud_server.ipv4_address }}"}]}},
            {"name": "TXT record", f"{hc}zone_rrset": {
                "zone": "aini.example", "name": "@", "type": "TXT",
                "records": [{"value": '"v=spf1 -all"', "comment": "no mail"}]}},
        ],
    }]


def run_playbook(path: Path, tmp: Path) -> dict:
    env = {**os.environ,
           "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_HOME": str(tmp / "ansible-home"),
           "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_DEPRECATION_WARNINGS": "0",
           "ANSIBLE_PIPELINING": "1",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("HCLOUD_TOKEN", None)
    env.pop("HCLOUD_ENDPOINT", None)
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(path)], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=300)
    start = proc.stdout.find("{")
    result = json.loads(proc.stdout[start:]) if start >= 0 else {}
    if proc.returncode != 0:
        failed = [(t["task"]["name"], h) for p in result.get("plays", []) for t in p["tasks"]
                  for h in t["hosts"].values() if h.get("failed")]
        pytest.fail(f"ansible-playbook rc={proc.returncode}\n{json.dumps(failed, indent=1)[:4000]}\n"
                    f"{proc.stderr[-3000:]}")
    return result


def changed_tasks(result: dict) -> list[str]:
    return [t["task"]["name"] for p in result["plays"] for t in p["tasks"]
            if any(h.get("changed") for h in t["hosts"].values())]


@pytest.mark.sim(action_delay=0.0)
def test_hcloud_collection_provisions_idempotently(sim, tmp_path):
    book = tmp_path / "site.yml"
    book.write_text(yaml.safe_dump(playbook(sim.url), sort_keys=False))

    first = run_playbook(book, tmp_path)
    assert first["stats"]["localhost"]["failures"] == 0
    assert set(changed_tasks(first)) == {"ssh key", "firewall", "server", "zone", "A record", "TXT record"}
    server = next(iter(sim.state.servers.values()))
    assert server["name"] == "aini-1" and server["status"] == "running"
    assert server["_user_data"].startswith("#cloud-config")
    assert server["_root_password"] is None and server["_ssh_keys"] == [ssh_public_key("ansible")]
    firewall = next(iter(sim.state.firewalls.values()))
    assert firewall["applied_to"] == [{"type": "server", "server": {"id": server["id"]}}]
    rrset = sim.state.rrsets[next(iter(sim.state.zones))][("chat", "A")]
    ipv4 = next(p["ip"] for p in sim.state.primary_ips.values() if p["type"] == "ipv4")
    assert rrset["records"] == [{"value": ipv4}]

    writes_before = sum(1 for r in sim.requests if r.method != "GET")
    second = run_playbook(book, tmp_path)
    assert second["stats"]["localhost"]["changed"] == 0, changed_tasks(second)
    # no creates, deletes or actions; hetzner.hcloud.zone 5.4.0 always sends an (empty) PUT
    writes = [r for r in sim.requests if r.method != "GET"][writes_before:]
    assert all(r.method == "PUT" and r.path.startswith("/zones/") for r in writes), writes
    assert len(sim.state.servers) == 1


def test_installed_collection_has_dns_modules():
    import ansible_collections.hetzner.hcloud as coll

    root = Path(list(coll.__path__)[0])
    manifest = json.loads((root / "MANIFEST.json").read_text())
    modules = {p.stem for p in (root / "plugins" / "modules").glob("*.py") if p.stem != "__init__"}
    assert tuple(int(x) for x in manifest["collection_info"]["version"].split(".")) >= (5, 4, 0)
    assert {"zone", "zone_info", "zone_rrset", "zone_rrset_info", "server", "firewall", "ssh_key"} <= modules


def test_values_aini_hands_ansible_are_never_templated(tmp_path, monkeypatch):
    """aini's run_playbook, the real ansible-playbook: a `{{ 7*7 }}` in a variable (a key's
    comment, say) and in the inventory arrives as written, not as 49."""
    from aini.infra import ansible, provision

    (tmp_path / "playbooks").mkdir()
    out = tmp_path / "out.json"
    (tmp_path / "playbooks" / "probe.yml").write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False,
        "tasks": [{"ansible.builtin.copy": {"dest": str(out), "content": "{{ [comment, nested, from_inventory] | to_json }}"}}],
    }]))
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    monkeypatch.setattr(ansible, "ANSIBLE_DIR", tmp_path)
    inventory = json.loads(json.dumps(provision.LOCAL_INVENTORY))
    inventory["all"]["hosts"]["localhost"]["from_inventory"] = "{{ 6*7 }}"
    ansible.run_playbook("probe.yml", inventory,
                         variables={"comment": "ops@{{ 7*7 }}", "nested": {"list": ["{% raw %}x", "{{ lookup('env', 'HOME') }}"]}})
    assert json.loads(out.read_text()) == [
        "ops@{{ 7*7 }}", {"list": ["{% raw %}x", "{{ lookup('env', 'HOME') }}"]}, "{{ 6*7 }}"]
