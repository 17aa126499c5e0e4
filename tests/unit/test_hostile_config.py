"""Malformed and hostile aini.yml files: every one exits 2 with a message, no traceback,
within a second. Each generated document is broken on purpose (a valid base with one
corruption), so exit 2 is the only right answer."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aini.cli import app

VALID = {"domain": "example.com", "email": "admin@example.com"}
runner = CliRunner()

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
bad_domains = st.one_of(
    st.text(max_size=80).filter(lambda s: "." not in s),
    st.from_regex(r"\A[A-Z]{1,10}\.[A-Z]{2,5}\Z"),
    st.from_regex(r"\A[a-z]{1,5}\.\.[a-z]{2,4}\Z"),
    st.from_regex(r"\A-[a-z]{1,8}\.com\Z"),
    st.just("a" * 300 + ".com"),
    st.from_regex(r"\A\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\Z"),
    st.integers(),
    st.lists(st.text(max_size=5), max_size=3),
)
bad_emails = st.one_of(st.text(max_size=40).filter(lambda s: "@" not in s), st.just("a@b"), st.just("@example.com"), st.just("a@@example.com"), st.integers())
field_paths = st.sampled_from(
    [
        ("target", "kind"), ("target", "server_type"), ("tls", "challenge"), ("tls", "staging"), ("admin", "user"),
        ("backup", "schedule"), ("backup", "retention", "daily"), ("images", "mirror"), ("images", "overrides"),
        ("services", "n8n", "database"), ("services", "librechat", "search"), ("services", "nextcloud", "s3"),
        ("services", "vault", "flavor"), ("services", "watchtower", "schedule"), ("project",),
    ]
)  # fmt: skip


def _set(doc: dict, path: tuple[str, ...], value) -> dict:
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return doc


def _wrong_value(path, value):
    doc = _set(dict(VALID), path, value)
    return doc


corruptions = st.one_of(
    bad_domains.map(lambda d: {**VALID, "domain": d}),
    bad_emails.map(lambda e: {**VALID, "email": e}),
    st.text(min_size=1, max_size=12).filter(lambda k: k not in {"project", "domain", "email", "target", "tls", "admin", "backup", "images", "services"}).map(lambda k: {**VALID, k: 1}),
    st.tuples(field_paths, st.one_of(st.lists(scalars, min_size=1, max_size=3), st.dictionaries(st.text(min_size=1, max_size=5), scalars, min_size=1, max_size=3), st.just("ftp://x"), st.just(-1))).map(lambda t: _wrong_value(*t)),
    st.sampled_from(["chat", "n8n", "cloud", "office", "traefik", "consul", "vault", "netdata"]).map(
        lambda sub: _set(dict(VALID), ("services", "n8n" if sub != "n8n" else "librechat", "subdomain"), sub)
    ),
    junk.filter(lambda j: not isinstance(j, dict) or not {"domain", "email"} <= set(j)),
)

raw_documents = st.one_of(
    st.integers(1, 60).map(lambda n: "a: &a [" + ",".join(["x"] * 9) + "]\n" + "".join(f"{chr(98 + i % 20)}{i}: &{chr(98 + i % 20)}{i} [" + ",".join([f"*{chr(97 + (i - 1) % 20) if i else 'a'}{i - 1 if i else ''}"] * 9) + "]\n" for i in range(1, n))),
    st.integers(100, 20000).map(lambda n: "domain: " + "[" * n + "]" * n),
    st.integers(100, 3000).map(lambda n: "domain:\n" + "".join(" " * i + f"k{i}:\n" for i in range(n))),
    st.integers(300_000, 2_000_000).map(lambda n: "domain: " + "x" * n + "\n"),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.just("domain: example.com\ndomain: example.org\nemail: a@example.com\n"),
    st.just("!!python/object/apply:os.system ['true']\n"),
    st.just("domain: example.com\nemail: a@example.com\nservices: !!binary aGVsbG8=\n"),
)


def run_validate(tmp_path, text: str):
    path = tmp_path / "aini.yml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    return runner.invoke(app, ["-c", str(path), "validate"])


def assert_refused(result):
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert output.startswith("error: "), output


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=corruptions)
def test_corrupted_documents_exit_2(tmp_path, doc):
    text = yaml.safe_dump(doc) if isinstance(doc, dict) else yaml.safe_dump(doc)
    assert_refused(run_validate(tmp_path, text))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=raw_documents)
def test_hostile_yaml_exits_2(tmp_path, text):
    assert_refused(run_validate(tmp_path, text))


def test_the_valid_base_is_accepted(tmp_path):
    """The corruptions start from this document: it must itself be valid."""
    result = run_validate(tmp_path, yaml.safe_dump(VALID))
    assert result.exit_code == 0, result.output




def test_a_trailing_newline_or_a_leading_dash_is_refused_naming_the_field(tmp_path):
    """Python's `$` also matches before a final newline: every pattern is a full match."""
    ssh = {"kind": "ssh", "host": "203.0.113.7"}
    cases = [
        ({**VALID, "domain": "example.org\n"}, "domain"),
        ({**VALID, "email": "admin@example.com\n"}, "email"),
        ({**VALID, "project": "aini\n"}, "project"),
        (_set(dict(VALID), ("services", "n8n", "subdomain"), "chat2\n"), "subdomain"),
        (_set(dict(VALID), ("images", "overrides"), {"n8n": "docker.n8n.io/n8nio/n8n:2.0.0\n"}), "overrides"),
        ({**VALID, "target": {**ssh, "host": "-oProxyCommand=touch /tmp/x"}}, "host"),
        ({**VALID, "target": {**ssh, "host": "example.org\n"}}, "host"),
        ({**VALID, "admin": {"user": "admin\n"}}, "user"),
    ]
    for doc, field in cases:
        result = run_validate(tmp_path, yaml.safe_dump(doc))
        assert_refused(result)
        assert field in result.output, (doc, result.output)
    assert run_validate(tmp_path, yaml.safe_dump({**VALID, "target": ssh})).exit_code == 0
