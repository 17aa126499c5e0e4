"""Every string field aini.yml's JSON Schema declares, set to values an attacker would try:
each is refused (exit 2, naming the field) or lands literally. What lands in a compose file is
checked by the real Docker Compose v2 binary run with AINI_FUZZ set: Compose must not expand it.
(Ansible's side: tests/contract/test_ansible.py runs aini's run_playbook with `{{ 7*7 }}`.)"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from aini import catalog
from aini.cli import app
from aini.config import ConfigError, json_schema, validate_data
from aini.render import bundle

from .conftest import seed_store
from .tools import compose_binary

HOSTILE = ["${AINI_FUZZ}", "$AINI_FUZZ", "$(id)", "`id`", "x\n", "-x", "{{ 7*7 }}", "a'b\"c", "../x",
           "0 0 4 * * ${AINI_FUZZ}", "30 3 * * ${AINI_FUZZ}"]  # the shapes of a cron field, one part hostile
BASE = {"domain": "example.com", "email": "admin@example.com"}
# The smallest document that makes a field meaningful (its target kind, its parent block).
CONTEXT = {
    "target": {"hetzner": {"kind": "hetzner"}, "ssh": {"kind": "ssh", "host": "203.0.113.7"},
               "local": {"kind": "local"}},
    "services.nextcloud.s3": {"bucket": "aini-files"},
}
SSH_FIELDS = {"host", "port", "user", "ssh_key"}
LOCAL_FIELDS = {"bind"}


def string_fields() -> list[tuple[str, ...]]:
    schema = json_schema()
    defs = schema.get("$defs", {})
    found: set[tuple[str, ...]] = set()

    def walk(node: dict, path: tuple[str, ...]) -> None:
        if "$ref" in node:
            return walk(defs[node["$ref"].split("/")[-1]], path)
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(key, []):
                walk(sub, path)
        if node.get("type") == "string" and not node.get("enum") and "const" not in node:
            found.add(path)
        for name, sub in node.get("properties", {}).items():
            walk(sub, (*path, name))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], (*path, "*"))
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            walk(node["items"], (*path, "[]"))

    walk(schema, ())
    return sorted(found)


def document(path: tuple[str, ...], value: str) -> dict:
    doc: dict = json.loads(json.dumps(BASE))
    if path[0] == "target":
        kind = "ssh" if path[1] in SSH_FIELDS else "local" if path[1] in LOCAL_FIELDS else "hetzner"
        doc["target"] = dict(CONTEXT["target"][kind])
    if path[:3] == ("services", "nextcloud", "s3"):
        doc.setdefault("services", {}).setdefault("nextcloud", {})["s3"] = dict(CONTEXT["services.nextcloud.s3"])
    node = doc
    keys = [k for k in path if k not in ("[]", "*")]
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    leaf: object = value
    if path[-1] == "[]":
        leaf = [value]
    elif path[-1] == "*":
        leaf = {"n8n": value}
    node[keys[-1]] = leaf
    return doc


CASES = [(path, value) for path in string_fields() for value in HOSTILE]


def test_the_schema_walk_finds_the_fields_the_review_named():
    fields = {".".join(p) for p in string_fields()}
    assert {"services.watchtower.schedule", "services.nextcloud.s3.region", "target.host", "domain",
            "images.overrides.*", "services.n8n.subdomain"} <= fields and len(fields) > 30


@pytest.mark.parametrize(("path", "value"), CASES, ids=[f"{'.'.join(p)}={v!r}" for p, v in CASES])
def test_a_hostile_value_is_refused_naming_its_field_or_lands_literally(path, value, tmp_path):
    doc = document(path, value)
    config_file = tmp_path / "aini.yml"
    config_file.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(app, ["-c", str(config_file), "validate"])
    field = [k for k in path if k not in ("[]", "*")][-1]
    if result.exit_code != 0:
        assert result.exit_code == 2 and result.output.startswith("error: "), result.output
        assert field in result.output or "overrides" in result.output, result.output
        assert "Traceback" not in result.output
        return
    try:
        config = validate_data(doc, "fuzz", base_dir=tmp_path)
    except ConfigError as exc:  # validate passed but a stricter load did not: the same answer is owed
        pytest.fail(f"validate accepted what loading refuses: {exc}")
    store = seed_store(tmp_path / ".aini")
    for spec in catalog.CATALOG:
        for secret in spec.user_secrets:
            store.set_user(secret.name, "fuzz-user-secret")
    files = bundle.render(config, store)
    bundle.write(files, tmp_path / "bundle")
    for name, file in files.items():
        if not name.endswith("compose.yml") or "$" not in value or value not in file.content:
            continue
        r = subprocess.run([compose_binary(), "-f", "compose.yml", "config", "--format", "json"],
                           cwd=tmp_path / "bundle" / name.split("/")[0], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "AINI_FUZZ": "leaked"})
        assert r.returncode == 0, r.stderr
        assert "leaked" not in r.stdout, (name, value)
