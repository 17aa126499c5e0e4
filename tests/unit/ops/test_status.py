"""`aini status`: the pure parts as data, the CLI against a fake docker Runner, and the
certificate check against a real TLS server on 127.0.0.1 (real handshakes, real SNI, a
certificate from the project's own local CA)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Self

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from aini import catalog
from aini.cli import app
from aini.config import validate_data
from aini import project as aini_project
from aini.docker import cmd as docker_cmd
from aini.docker import engine
from aini.deploy import record
from aini.cli import tables
from aini.ops import status
from aini.sites import local as sites_local
from aini.infra import localca

TOOLS = docker_cmd.Tools(("docker",), ())
NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
LOCAL_CA_ISSUER = "AINI local CA for localhost"


# ------------------------------------------------------------------ helpers


def local_data(https_port: int = 443, project: str = "p") -> dict:
    return {"project": project, "domain": "localhost", "email": "a@example.com",
            "target": {"kind": "local", "bind": "127.0.0.1", "http_port": 8080, "https_port": https_port}}


def deployed_manifest(config) -> dict:
    groups = catalog.groups(catalog.enabled(config))
    return {
        "format": 1, "project": config.project, "domain": config.domain, "order": list(groups),
        "groups": {g: {"hash": f"h-{g}", "services": [s.name for s in members],
                       "images": {s.name: s.pinned for s in members}} for g, members in groups.items()},
        "files": {},
    }


def container_row(spec, **over) -> dict:
    """One line of `docker inspect --format engine.INSPECT_FORMAT`, as the template prints it."""
    row = {"id": (spec.name.encode().hex() * 8)[:64], "name": f"/{spec.container}", "state": "running",
           "health": "healthy" if spec.health.test else None, "restarts": 0,
           "started_at": "2026-05-01T11:00:00.123456789Z", "exit_code": 0,
           "group": spec.group, "service": spec.name}
    return row | over


def as_docker(row: dict) -> dict:
    """A flat row as `docker inspect --format INSPECT_FORMAT` prints it: the whole .State object,
    with Health only when the container has a health check (as Docker does)."""
    state = {"Status": row["state"], "StartedAt": row["started_at"], "ExitCode": row["exit_code"]}
    if row.get("health"):
        state["Health"] = {"Status": row["health"], "FailingStreak": 0, "Log": []}
    return {"id": row["id"], "name": row["name"], "state": state, "restarts": row["restarts"],
            "group": row["group"], "service": row["service"]}


def healthy_rows(config) -> dict[str, dict]:
    return {s.name: container_row(s) for s in catalog.enabled(config)}


class FakeDocker:
    """A Runner answering `docker ps` and `docker inspect` from canned rows; records argv."""

    def __init__(self, rows: dict[str, dict] | None = None, ps_fails: str | None = None):
        self.rows = rows or {}
        self.ps_fails = ps_fails
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, cmd: docker_cmd.Cmd) -> subprocess.CompletedProcess:
        self.calls.append(cmd.argv)
        if cmd.argv[1] == "ps":
            if self.ps_fails:
                return subprocess.CompletedProcess(cmd.argv, 1, "", self.ps_fails)
            return subprocess.CompletedProcess(cmd.argv, 0, "".join(r["id"] + "\n" for r in self.rows.values()), "")
        if cmd.argv[1] == "inspect":
            wanted = set(cmd.argv[cmd.argv.index("--format") + 2:])
            out = "".join(json.dumps(as_docker(r), separators=(",", ":")) + "\n"
                          for r in self.rows.values() if r["id"] in wanted)
            return subprocess.CompletedProcess(cmd.argv, 0, out, "")
        raise AssertionError(f"status ran an unexpected command: {cmd.argv}")


class TlsServer:
    """A TLS server on 127.0.0.1 presenting one certificate chain; records the SNI names."""

    def __init__(self, cert: Path, key: Path):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sni: list[str] = []
        self.context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)  # until the client closes
        except (OSError, ssl.SSLError):
            pass


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local_certs(tmp_path):
    """The project's own local CA and server certificate for every routed host."""
    config = validate_data(local_data(), "t")
    return localca.ensure(tmp_path / "local-ca", "localhost", localca.hostnames(config))


@pytest.fixture
def tls_server(local_certs):
    with TlsServer(local_certs.cert, local_certs.key) as server:
        yield server


@pytest.fixture
def project(tmp_path, tls_server):
    """aini.yml (local target, Traefik's HTTPS port = the TLS server) and a deployed manifest."""
    data = local_data(https_port=tls_server.port)
    (tmp_path / "aini.yml").write_text(yaml.safe_dump(data))
    config = validate_data(data, "t")
    deploy_dir = tmp_path / ".aini" / aini_project.DEPLOYED_DIR
    deploy_dir.mkdir(parents=True)
    (deploy_dir / record.DEPLOYED_MANIFEST).write_text(json.dumps(deployed_manifest(config)))
    return tmp_path


def aini_status(project: Path, fake: FakeDocker, monkeypatch, *args: str):
    monkeypatch.setattr(sites_local, "run_cmd", fake)  # what LocalSite runs
    monkeypatch.setenv("AINI_DOCKER", "docker")
    runner = CliRunner()
    return runner.invoke(app, ["-c", str(project / "aini.yml"), "status", *args], env={"COLUMNS": "250"})


def aini_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aini", *args], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "AINI_DOCKER": "/nonexistent/docker"})


# ------------------------------------------------------------------ commands and parsing


def test_commands_are_argv_lists_that_never_ask_for_the_environment():
    ps = engine.status_cmd(TOOLS, "p")
    assert ps.argv[:3] == ("docker", "ps", "--all")
    assert "label=aini.project=p" in ps.argv and ps.timeout <= 30
    inspect = engine.inspect_cmd(TOOLS, ["a" * 64, "b" * 64])
    assert inspect.argv[:4] == ("docker", "inspect", "--type", "container")
    assert inspect.argv[-2:] == ("a" * 64, "b" * 64)
    assert ".Env" not in engine.INSPECT_FORMAT  # the env files' secret values stay unread
    for label in ("aini.group", "aini.service"):
        assert f'(index .Config.Labels "{label}")' in engine.INSPECT_FORMAT


def test_parse_inspect_reads_the_template_output():
    traefik_row = {"id": "ab12", "name": "/aini-traefik", "state": "running", "health": "healthy", "restarts": 2,
                   "started_at": "2026-05-01T11:59:30.123456789Z", "exit_code": 0, "group": "traefik",
                   "service": "traefik"}
    watchtower_row = {"id": "cd34", "name": "/aini-watchtower", "state": "exited", "health": None, "restarts": 0,
                      "started_at": "0001-01-01T00:00:00Z", "exit_code": 137, "group": "watchtower",
                      "service": "watchtower"}
    lines = [json.dumps(as_docker(traefik_row)), json.dumps(as_docker(watchtower_row)),
             "Error: No such object: ef56", "{not json", ""]
    out = "\n".join(lines)
    traefik, watchtower = engine.parse_inspect(out)
    assert (traefik.name, traefik.service, traefik.group, traefik.health, traefik.restarts) == (
        "aini-traefik", "traefik", "traefik", "healthy", 2)
    assert traefik.started_at == dt.datetime(2026, 5, 1, 11, 59, 30, 123456, tzinfo=dt.UTC)
    assert (watchtower.state, watchtower.health, watchtower.exit_code, watchtower.started_at) == (
        "exited", None, 137, None)
    assert engine.parse_ids("0123456789ab\n\nWARNING: something\n" + "f" * 64 + "\n") == ["0123456789ab", "f" * 64]


def test_expected_services_follow_the_manifest_with_urls_from_the_catalog():
    config = validate_data(local_data(https_port=8443), "t")
    expected = status.expected_services(deployed_manifest(config), config)
    assert [e.service for e in expected] == [s.name for s in catalog.enabled(config)]
    by_name = {e.service: e for e in expected}
    assert by_name["librechat"].url == "https://chat.localhost:8443/"
    assert by_name["librechat"].host == "chat.localhost"
    assert by_name["mongodb"].url is None and by_name["mongodb"].host is None
    assert status.tls_endpoint(config) == ("127.0.0.1", 8443)
    on_443 = validate_data(local_data(https_port=443), "t")
    assert status.expected_services(deployed_manifest(on_443), on_443)[0].url == "https://traefik.localhost/"
    remote = validate_data({"domain": "example.com", "email": "a@example.com",
                            "services": {"librechat": {"subdomain": "ai"}}}, "t")
    urls = {e.service: e.url for e in status.expected_services(deployed_manifest(remote), remote)}
    assert urls["librechat"] == "https://ai.example.com/" and status.tls_endpoint(remote) is None
    # A service an older AINI deployed and this catalog does not know: listed, without a URL.
    old = {"order": ["x"], "groups": {"x": {"services": ["gone"]}}}
    assert status.expected_services(old, config) == [status.Expected("gone", "x")]


# ------------------------------------------------------------------ assess


def _container(service: str = "n8n", **over) -> engine.Container:
    fields = {"id": "1" * 12, "name": f"aini-{service}", "group": service, "service": service,
              "state": "running", "health": "healthy", "restarts": 0,
              "started_at": NOW - dt.timedelta(hours=1), "exit_code": 0} | over
    return engine.Container(**fields)


GOOD_CERT = status.CertInfo("n8n.localhost", NOW + dt.timedelta(days=300), "Some CA", ("n8n.localhost",))


@pytest.mark.parametrize("container, ok, reason", [
    (_container(), True, ""),
    (_container(health=None), True, ""),  # no health check: running is enough
    (_container(health="unhealthy"), False, "health check failing"),
    (None, False, "no container"),
    (_container(state="restarting", restarts=7), False, "restarting (restarted 7 times)"),
    (_container(state="exited", exit_code=137, health=None), False, "exited with code 137"),
    (_container(state="created"), False, "created but never started"),
    (_container(state="paused"), False, "paused"),
    (_container(health="starting", started_at=NOW - dt.timedelta(seconds=20)), True, "health check starting"),
    (_container(health="starting", started_at=NOW - dt.timedelta(seconds=600)), False,
     "health check still starting after 10 min 0 s"),
])
def test_assess_decides_per_container(container, ok, reason):
    expected = [status.Expected("n8n", "n8n", "n8n.localhost", "https://n8n.localhost/")]
    [row] = status.assess(expected, [container] if container else [], {"n8n.localhost": GOOD_CERT}, NOW)
    assert (row.ok, row.reason) == (ok, reason)
    assert row.state == (container.state if container else "missing")
    assert row.restarts == (container.restarts if container else None)
    assert row.url == "https://n8n.localhost/" and row.cert_days_left == 300 and row.cert_issuer == "Some CA"


@pytest.mark.parametrize("cert, ok, reason", [
    (status.CertInfo("n8n.localhost", error="connection refused at 127.0.0.1:1"), False,
     "TLS: connection refused at 127.0.0.1:1"),
    (status.CertInfo("n8n.localhost", NOW - dt.timedelta(days=3), "CA", ("n8n.localhost",)), False,
     "certificate expired on 2026-04-28"),
    (status.CertInfo("n8n.localhost", NOW + dt.timedelta(days=90), "TRAEFIK DEFAULT CERT", ("x.traefik.default",)),
     False, "certificate does not name n8n.localhost (issuer TRAEFIK DEFAULT CERT)"),
    (status.CertInfo("n8n.localhost", NOW + dt.timedelta(days=5, hours=1), "CA", ("*.localhost",)), True,
     "certificate expires in 5 days"),
])
def test_assess_judges_the_certificate(cert, ok, reason):
    expected = [status.Expected("n8n", "n8n", "n8n.localhost", "https://n8n.localhost/")]
    [row] = status.assess(expected, [_container()], {"n8n.localhost": cert}, NOW)
    assert (row.ok, row.reason) == (ok, reason)


def test_assess_lists_containers_the_manifest_does_not_know_and_prefers_the_running_one():
    expected = [status.Expected("n8n", "n8n")]
    containers = [_container(state="exited", id="old"), _container(id="new"),
                  _container("onlyoffice", health="unhealthy")]  # its group's last deploy failed
    rows = status.assess(expected, containers, {}, NOW)
    assert [(r.service, r.ok, r.reason) for r in rows] == [
        ("n8n", True, ""),
        ("onlyoffice", False, "health check failing; not in the deployed manifest"),
    ]


def test_report_json_shape_is_stable():
    row = status.assess([status.Expected("n8n", "n8n", "n8n.localhost", "https://n8n.localhost/")],
                        [_container()], {"n8n.localhost": GOOD_CERT}, NOW)
    report = status.StatusReport("p", tuple(row), NOW)
    data = report.to_dict()
    assert data == {"ok": True, "checked_at": "2026-05-01T12:00:00+00:00", "project": "p", "services": [{
        "service": "n8n", "group": "n8n", "state": "running", "health": "healthy", "restarts": 0,
        "url": "https://n8n.localhost/", "cert_expires": "2027-02-25T12:00:00+00:00", "cert_days_left": 300,
        "cert_issuer": "Some CA", "ok": True, "reason": "", "consul": None, "backup": None}]}
    assert not status.StatusReport("p", (), NOW).ok  # nothing running is not healthy


# ------------------------------------------------------------------ certificates, for real


def test_certificate_is_read_through_a_real_handshake_with_sni(tls_server):
    info = status.fetch_certificate("chat.localhost", ("127.0.0.1", tls_server.port))
    assert info.error is None
    assert info.issuer == LOCAL_CA_ISSUER
    assert info.names_host and "chat.localhost" in info.names
    assert 360 <= info.days_left(dt.datetime.now(dt.UTC)) <= 365
    assert "chat.localhost" in tls_server.sni


def test_expired_certificate_is_reported(tmp_path):
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    certs = localca.ensure(tmp_path / "old-ca", "localhost", ["n8n.localhost"], now=long_ago)
    with TlsServer(certs.cert, certs.key) as server:
        info = status.fetch_certificate("n8n.localhost", ("127.0.0.1", server.port))
    now = dt.datetime.now(dt.UTC)
    assert info.error is None and info.not_after < now and info.days_left(now) < -30
    ok, reason = status.cert_verdict(info, now)
    assert not ok and reason.startswith("certificate expired on ")


def test_refused_and_silent_endpoints_are_reported_not_raised_and_bounded():
    port = closed_port()
    refused = status.fetch_certificate("n8n.localhost", ("127.0.0.1", port), timeout=1)
    assert refused.error == f"connection refused at 127.0.0.1:{port}" and refused.not_after is None
    # A listener that never answers the handshake: each host times out, all at once.
    with socket.create_server(("127.0.0.1", 0), backlog=32) as silent:
        hosts = [f"h{i}.localhost" for i in range(10)]
        results = status.check_certificates(hosts, ("127.0.0.1", silent.getsockname()[1]), timeout=0.5)
    assert sorted(results) == hosts
    assert all("within 0.5 s" in (r.error or "") for r in results.values()), results


def test_plain_http_on_the_https_port_is_a_handshake_failure():
    with socket.create_server(("127.0.0.1", 0)) as server:
        def answer():
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        info = status.fetch_certificate("n8n.localhost", ("127.0.0.1", server.getsockname()[1]), timeout=2)
        thread.join(2)
    assert info.error and info.error.startswith("handshake with 127.0.0.1:") and "failed" in info.error


# ------------------------------------------------------------------ the command


def test_all_healthy_exit_0_with_a_row_per_service(project, monkeypatch, tls_server):
    config = validate_data(yaml.safe_load((project / "aini.yml").read_text()), "t")
    fake = FakeDocker(healthy_rows(config))
    result = aini_status(project, fake, monkeypatch)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for spec in catalog.enabled(config):
        assert spec.name in out
    assert f"https://chat.localhost:{tls_server.port}/" in out
    assert "AINI local CA" in out
    assert f"All {len(catalog.enabled(config))} services healthy" in out
    assert [c[1] for c in fake.calls] == ["ps", "inspect"]  # two docker calls, whatever the size


def test_json_shape(project, monkeypatch, tls_server):
    config = validate_data(yaml.safe_load((project / "aini.yml").read_text()), "t")
    result = aini_status(project, FakeDocker(healthy_rows(config)), monkeypatch, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"ok", "checked_at", "project", "services"} and data["ok"] is True
    assert dt.datetime.fromisoformat(data["checked_at"]).tzinfo is not None
    keys = {"service", "group", "state", "health", "restarts", "url", "cert_expires", "cert_days_left",
            "cert_issuer", "ok", "reason", "consul", "backup"}
    assert all(set(row) == keys for row in data["services"])
    rows = {r["service"]: r for r in data["services"]}
    assert list(rows) == [s.name for s in catalog.enabled(config)]
    chat = rows["librechat"]
    assert chat["url"] == f"https://chat.localhost:{tls_server.port}/"
    assert chat["cert_issuer"] == LOCAL_CA_ISSUER and chat["cert_days_left"] >= 360
    assert dt.datetime.fromisoformat(chat["cert_expires"]) > dt.datetime.now(dt.UTC)
    assert rows["mongodb"]["url"] is None and rows["mongodb"]["cert_days_left"] is None
    assert rows["netdata"]["health"] is None and rows["netdata"]["ok"] is True  # no health check
    assert set(tls_server.sni) == set(localca.hostnames(config))  # one real handshake per routed host


def test_one_unhealthy_exit_1_naming_it(project, monkeypatch):
    config = validate_data(yaml.safe_load((project / "aini.yml").read_text()), "t")
    rows = healthy_rows(config)
    rows["meilisearch"]["health"] = "unhealthy"
    result = aini_status(project, FakeDocker(rows), monkeypatch)
    assert result.exit_code == 1
    assert "1 of" in result.stdout and "not healthy: meilisearch" in result.stdout
    assert "health check failing" in result.stdout
    result = aini_status(project, FakeDocker(rows), monkeypatch, "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 1 and data["ok"] is False
    assert [r["service"] for r in data["services"] if not r["ok"]] == ["meilisearch"]


def test_missing_container_and_restarting_with_its_count(project, monkeypatch):
    config = validate_data(yaml.safe_load((project / "aini.yml").read_text()), "t")
    rows = healthy_rows(config)
    del rows["redis"]
    rows["n8n"] |= {"state": "restarting", "restarts": 12, "health": "unhealthy"}
    result = aini_status(project, FakeDocker(rows), monkeypatch, "--json")
    assert result.exit_code == 1
    bad = {r["service"]: r for r in json.loads(result.stdout)["services"] if not r["ok"]}
    assert set(bad) == {"redis", "n8n"}
    assert bad["redis"]["state"] == "missing" and bad["redis"]["reason"] == "no container"
    assert bad["n8n"]["restarts"] == 12 and bad["n8n"]["reason"] == "restarting (restarted 12 times)"
    table = aini_status(project, FakeDocker(rows), monkeypatch)
    assert table.exit_code == 1 and "not healthy: n8n, redis" in table.stdout and "missing" in table.stdout


def test_traefik_not_answering_fails_every_routed_row(project, monkeypatch):
    data = yaml.safe_load((project / "aini.yml").read_text())
    data["target"]["https_port"] = closed_port()
    (project / "aini.yml").write_text(yaml.safe_dump(data))
    config = validate_data(data, "t")
    result = aini_status(project, FakeDocker(healthy_rows(config)), monkeypatch, "--json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)["services"]
    failing = {r["service"] for r in rows if not r["ok"]}
    assert failing == {s.name for s in catalog.enabled(config) if s.route}
    assert all(r["reason"].startswith("TLS: connection refused") for r in rows if not r["ok"])


def test_docker_engine_down_is_exit_1_without_traceback(project, monkeypatch):
    fake = FakeDocker(ps_fails="Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")
    result = aini_status(project, fake, monkeypatch)
    assert result.exit_code == 1
    assert "the Docker engine does not answer: Cannot connect" in result.stderr
    assert "Traceback" not in result.output


def test_nothing_deployed_yet_is_exit_1(tmp_path):
    (tmp_path / "aini.yml").write_text(yaml.safe_dump(local_data()))
    result = aini_process("status", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: nothing deployed yet; run aini up"
    assert result.stdout == ""
    json_result = aini_process("status", "--json", cwd=tmp_path)
    assert json_result.returncode == 1 and "nothing deployed yet" in json_result.stderr


def test_remote_status_errors_are_one_line(tmp_path):
    (tmp_path / "aini.yml").write_text(yaml.safe_dump(
        {"domain": "example.com", "email": "a@example.com", "target": {"kind": "ssh", "host": "203.0.113.7"}}))
    result = aini_process("status", "--connect", "nonsense", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--connect: 'nonsense' is not HOST:PORT" in result.stderr
    result = aini_process("status", cwd=tmp_path)  # the default key does not exist here
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "target.ssh_key" in result.stderr


def test_status_of_the_whole_stack_is_two_docker_calls_and_one_handshake_per_host(project, tls_server):
    """Its wall time is a figure of bench/bounds.py, not asserted here."""
    config = validate_data(yaml.safe_load((project / "aini.yml").read_text()), "t")
    fake = FakeDocker(healthy_rows(config))
    report = status.collect(config, project, fake, TOOLS)
    assert [argv[1] for argv in fake.calls] == ["ps", "inspect"]
    assert sorted(set(tls_server.sni)) == sorted(localca.hostnames(config))
    assert report.ok and len(report.services) == len(catalog.enabled(config))
    out = io.StringIO()
    tables.status_table(report, Console(width=250, file=out))
    assert "FAIL" not in out.getvalue() and "services healthy" in out.getvalue()


def test_control_plane_overlay_marks_a_sealed_vault_and_critical_checks():
    def row(name, ok=True):
        return status.ServiceStatus(name, name, "running", "healthy", 0, None, None, None, None, ok, "")

    report = status.StatusReport("p", (row("vault"), row("librechat"), row("mongodb"), row("n8n")),
                                 dt.datetime.now(dt.UTC))
    out = status.overlay_control_plane(report, "sealed", {"librechat": "critical", "n8n": "passing", "vault": "passing"})
    rows = {r.service: r for r in out.services}
    assert not rows["vault"].ok and "aini vault unseal" in rows["vault"].reason
    assert not rows["librechat"].ok and rows["librechat"].consul == "critical"
    assert rows["n8n"].ok and rows["n8n"].consul == "passing" and rows["mongodb"].consul is None
    assert not out.ok and {r.service for r in out.failing} == {"vault", "librechat"}
    assert status.overlay_control_plane(report, "active", None) == report
