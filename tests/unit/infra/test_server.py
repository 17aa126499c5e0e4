"""Moving sshd to the configured SSH port, the parts without a server: which port a run
connects on (real TCP listeners on 127.0.0.1), where sshd must end up (a forward keeps it
where the forward points), the per-project record of the last port, and the Hetzner Cloud
Firewall rules (the former port open while sshd moves, closed afterwards).

Nothing here leaves 127.0.0.1: ssh, Ansible and the Hetzner API are replaced by fakes.
"""
from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
import yaml

from aini.infra import provision
from aini.infra import server as host
from aini.config import HetznerTarget, SshTarget
from aini.errors import AiniError
from aini.infra.ansible import ANSIBLE_DIR
from aini.infra.server import ADMIN_USER, Login, UpOptions, UpResult
from aini.ops import up as ops_up
from aini.project import SSH_PORTS, Project
from aini.sites.ssh import SshAccess

from ..conftest import config_of

BANNER = b"SSH-2.0-OpenSSH_9.2\r\n"
ANSIBLE = ANSIBLE_DIR


# --- real listeners on 127.0.0.1 ------------------------------------------------------------

class Listener:
    """A TCP listener on 127.0.0.1. `greet(n)` gives what the n-th connection receives:
    bytes are sent and the connection is held open (as sshd waits for the client's
    banner), b"" closes it at once, None holds it open in silence."""

    def __init__(self, greet):
        self.greet = greet
        self.accepted = 0
        self._changed = threading.Condition()
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._changed:
                self.accepted += 1
                self._changed.notify_all()
            data = self.greet(self.accepted)
            if data == b"":
                conn.close()
                continue
            if data:
                conn.sendall(data)
            self._held.append(conn)

    def wait_accepted(self, count: int) -> int:
        """The number of connections accepted, once it reaches `count` (a client that gave up
        may have been quicker than this thread's accept) or after 5 s."""
        with self._changed:
            self._changed.wait_for(lambda: self.accepted >= count, timeout=5)
            return self.accepted

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def listen():
    """listen(kind) -> Listener; kind: 'ssh', 'silent', 'http', 'eof' or a greet function."""
    made: list[Listener] = []
    kinds = {"ssh": lambda n: BANNER, "silent": lambda n: None, "eof": lambda n: b"",
             "http": lambda n: b"HTTP/1.1 400 Bad Request\r\n\r\n"}

    def make(kind):
        listener = Listener(kinds[kind] if isinstance(kind, str) else kind)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections: bound but not listening, so no other
    process can start listening on it while the test runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def quick_probe(monkeypatch):
    """A silent listener holds a probe for PROBE_TIMEOUT; keep that short (but long enough
    for a listener thread on a busy machine to greet). Sleeps between attempts are
    recorded, not slept."""
    monkeypatch.setattr(host, "PROBE_TIMEOUT", 0.5)
    slept: list[float] = []
    monkeypatch.setattr(host.time, "sleep", slept.append)
    return slept


# --- answering_port -----------------------------------------------------------------------

def test_the_first_port_that_greets_with_an_ssh_banner_wins(listen, closed_port):
    first, second = listen("ssh"), listen("ssh")
    assert host.answering_port("127.0.0.1", [first.port, second.port]) == first.port
    # The first answer ends the search: a later candidate is never dialled.
    assert second.accepted == 0
    assert host.answering_port("127.0.0.1", [closed_port, second.port]) == second.port


def test_a_port_that_accepts_but_is_no_ssh_server_is_passed_over(listen, closed_port, quick_probe):
    silent, eof, http, ssh = listen("silent"), listen("eof"), listen("http"), listen("ssh")
    ports = [closed_port, silent.port, eof.port, http.port, ssh.port]
    assert host.answering_port("127.0.0.1", ports) == ssh.port
    # Each was really tried (a connect alone does not count as an answer).
    assert (silent.wait_accepted(1), eof.accepted, http.accepted) == (1, 1, 1)


def test_no_answer_is_none_after_every_attempt(listen, closed_port, quick_probe):
    eof = listen("eof")
    assert host.answering_port("127.0.0.1", [closed_port, eof.port]) is None
    assert quick_probe == []  # one attempt: no pause
    assert host.answering_port("127.0.0.1", [closed_port, eof.port], attempts=3) is None
    assert quick_probe == [2, 2]  # a pause between attempts, none after the last
    assert eof.accepted == 4


def test_a_later_attempt_finds_sshd_that_was_restarting(listen, quick_probe):
    # sshd restarting: the first connection is cut without a banner, the next one greets.
    restarting = listen(lambda n: b"" if n == 1 else BANNER)
    assert host.answering_port("127.0.0.1", [restarting.port], attempts=3) == restarting.port
    assert quick_probe == [2] and restarting.accepted == 2


# --- where sshd must listen ---------------------------------------------------------------

def _target(port: int, host_: str = "198.51.100.4") -> SshTarget:
    return SshTarget(kind="ssh", host=host_, port=port, user="root", ssh_key="id")


def _access(port: int, host_: str = "198.51.100.4") -> SshAccess:
    return SshAccess(host_, port, Path("/k/id"), Path("/k/known_hosts"))


@pytest.mark.parametrize(("configured", "dialled", "arrived", "wanted"), [
    (2222, 22, 22, (2222, 22)),      # a fresh server: sshd moves from 22 to the configured port
    (2222, 22, None, (2222, 22)),    # SSH_CONNECTION unknown: taken as no forward
    (2222, 2222, 2222, (2222, 2222)),  # already there: nothing moves
    (2200, 2222, 2222, (2200, 2222)),  # port changed in aini.yml: moves again
])
def test_without_a_forward_sshd_moves_to_the_configured_port(configured, dialled, arrived, wanted):
    assert host._sshd_ports(_target(configured), _access(dialled), arrived) == wanted


def test_a_forwarded_connection_keeps_sshd_where_the_forward_points():
    # Docker's -p 2222:22 or a router: port 2222 outside leads to 22 on the server. Moving
    # sshd to 2222 would cut the forward off; it stays on 22 and nothing moves.
    assert host._sshd_ports(_target(2222), _access(2222), 22) == (22, 22)
    assert host._sshd_ports(_target(2222), _access(2222), 2022) == (2022, 2022)


def test_a_forward_on_another_port_than_the_configured_one_is_refused():
    # Only the former port answers, and it is forwarded: moving sshd cannot help.
    with pytest.raises(AiniError) as caught:
        host._sshd_ports(_target(2200), _access(2222), 22)
    message = str(caught.value)
    assert "port 2222 is forwarded to port 22" in message and "target.port: 2222" in message


def _ssh_result(stdout: str, returncode: int = 0) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], returncode, stdout, "")


@pytest.mark.parametrize(("line", "port"), [
    ("ssh-connection 203.0.113.9 51234 10.0.0.2 2222", 2222),
    ("ssh-connection 2001:db8::9 40000 2001:db8::2 22", 22),
    ("ssh-connection ", None),  # $SSH_CONNECTION unset
])
def test_log_in_reads_the_server_port_from_ssh_connection(line, port):
    commands: list[tuple[str, str]] = []

    def run(user, command):
        commands.append((user, command))
        return _ssh_result(f"MemTotal:        4030000 kB\n{line}\n")

    login = host.log_in(SimpleNamespace(run=run, where="h:22"), "root")
    assert login == Login(ADMIN_USER, 4030000 // 1024, port)
    assert '"ssh-connection $SSH_CONNECTION"' in commands[0][1]


# --- configure_ssh_host: candidates, variables, record --------------------------------------

@pytest.fixture
def server_run(tmp_path, monkeypatch):
    """A project with a key; log_in and the playbook are fakes that record what they got.
    `server_run.arrived` is the server port the fake login reports (None: as dialled)."""
    key = tmp_path / "id"
    key.write_text("PRIVATE KEY\n")
    key.chmod(0o600)
    key.with_name("id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBtest operator\n")
    state = SimpleNamespace(project=tmp_path, dialled=[], playbooks=[], arrived=None, fail=None)

    def fake_log_in(access, target_user):
        state.dialled.append(access.port)
        return Login("root", 2048, state.arrived if state.arrived is not None else access.port)

    def fake_run_playbook(playbook, inventory, variables, **_):
        state.playbooks.append((playbook, inventory, variables))
        if state.fail:
            raise state.fail
        return SimpleNamespace(changed=3, elapsed=1.0, stats={})

    monkeypatch.setattr(host, "log_in", fake_log_in)
    monkeypatch.setattr(host, "run_playbook", fake_run_playbook)
    return state


def _configure(state, port: int, former: tuple[int, ...] = ()) -> UpResult:
    target = SshTarget(kind="ssh", host="127.0.0.1", port=port, user="root", ssh_key=str(state.project / "id"))
    return host.configure_ssh_host(target, state.project, UpOptions(), former_ports=former)


def _moved(state) -> tuple[int, int, int]:
    """(the port Ansible connects on, base_ssh_port, base_ssh_port_current) of the last run."""
    _, inventory, variables = state.playbooks[-1]
    return (inventory["all"]["hosts"]["127.0.0.1"]["ansible_port"], variables["base_ssh_port"],
            variables["base_ssh_port_current"])


def test_sshd_on_the_recorded_port_is_found_and_moved_to_the_configured_one(server_run, listen, closed_port):
    old = listen("ssh")
    host._record_port(server_run.project, "127.0.0.1", old.port)
    result = _configure(server_run, closed_port)
    assert server_run.dialled == [old.port]
    assert _moved(server_run) == (old.port, closed_port, old.port)
    # The run reports, and records, the configured port: the next run dials it first.
    assert result.port == closed_port
    assert host._recorded_ports(server_run.project, "127.0.0.1") == [closed_port]


def test_the_configured_port_is_dialled_when_it_answers(server_run, listen):
    now, recorded = listen("ssh"), listen("ssh")
    host._record_port(server_run.project, "127.0.0.1", recorded.port)
    _configure(server_run, now.port)
    assert _moved(server_run) == (now.port, now.port, now.port)
    assert recorded.accepted == 0


def test_a_port_the_cloud_firewall_still_lets_in_is_a_candidate(server_run, listen, closed_port):
    former = listen("ssh")
    _configure(server_run, closed_port, former=(former.port,))
    assert _moved(server_run) == (former.port, closed_port, former.port)


def test_a_forward_found_by_log_in_leaves_sshd_in_place(server_run, listen):
    forwarded = listen("ssh")
    server_run.arrived = 22  # outside port -> 22 on the server
    _configure(server_run, forwarded.port)
    assert _moved(server_run) == (forwarded.port, 22, 22)


def test_a_forward_on_a_former_port_stops_before_the_playbook(server_run, listen, closed_port):
    old = listen("ssh")
    host._record_port(server_run.project, "127.0.0.1", old.port)
    server_run.arrived = 22
    with pytest.raises(AiniError, match=f"port {old.port} is forwarded to port 22"):
        _configure(server_run, closed_port)
    assert server_run.playbooks == []
    assert host._recorded_ports(server_run.project, "127.0.0.1") == [old.port]


def test_a_failed_run_keeps_the_record_of_where_sshd_was(server_run, listen, closed_port):
    # Recording the new port before the playbook succeeded would forget the old one: a run
    # that failed before sshd moved could then not find sshd again (unless on 22).
    old = listen("ssh")
    host._record_port(server_run.project, "127.0.0.1", old.port)
    server_run.fail = AiniError("the new port cannot be reached")
    with pytest.raises(AiniError):
        _configure(server_run, closed_port)
    assert host._recorded_ports(server_run.project, "127.0.0.1") == [old.port]


# --- the record in .aini/ -------------------------------------------------------------------

def test_the_record_lives_in_the_private_gitignored_project_store(tmp_path):
    host._record_port(tmp_path, "203.0.113.7", 2222)
    store = tmp_path / ".aini"
    path = store / SSH_PORTS
    assert json.loads(path.read_text()) == {"203.0.113.7": 2222}
    # Port numbers are no secret: the file is written with the umask (no chmod), and the
    # store directory it sits in is private and ignored by git.
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert "*" in (store / ".gitignore").read_text().splitlines()


def test_the_record_is_per_host_and_rewritten_only_on_a_change(tmp_path):
    assert host._recorded_ports(tmp_path, "203.0.113.7") == []
    host._record_port(tmp_path, "203.0.113.7", 2222)
    host._record_port(tmp_path, "198.51.100.4", 22)
    host._record_port(tmp_path, "203.0.113.7", 2200)
    assert host._recorded_ports(tmp_path, "203.0.113.7") == [2200]
    assert host._recorded_ports(tmp_path, "198.51.100.4") == [22]
    assert host._recorded_ports(tmp_path, "192.0.2.1") == []
    path = tmp_path / ".aini" / SSH_PORTS
    path.write_text('{"203.0.113.7": 2200, "198.51.100.4": 22}')  # another layout, same content
    host._record_port(tmp_path, "203.0.113.7", 2200)
    assert path.read_text() == '{"203.0.113.7": 2200, "198.51.100.4": 22}'


@pytest.mark.parametrize("content", ["", "not json", "[2222]", '{"203.0.113.7": "2222"}', '"x"'])
def test_a_damaged_record_is_ignored_and_replaced(tmp_path, content):
    path = tmp_path / ".aini" / SSH_PORTS
    path.parent.mkdir(mode=0o700)
    path.write_text(content)
    assert host._recorded_ports(tmp_path, "203.0.113.7") == []
    host._record_port(tmp_path, "203.0.113.7", 2222)
    assert host._recorded_ports(tmp_path, "203.0.113.7") == [2222]


# --- the Hetzner Cloud Firewall --------------------------------------------------------------

ANYWHERE = ["0.0.0.0/0", "::/0"]
WEB = [
    {"description": "http", "direction": "in", "protocol": "tcp", "port": "80", "source_ips": ANYWHERE},
    {"description": "https", "direction": "in", "protocol": "tcp", "port": "443", "source_ips": ANYWHERE},
    {"description": "ping", "direction": "in", "protocol": "icmp", "source_ips": ANYWHERE},
]


def _ssh_rule(port: int, sources, former: bool = False) -> dict:
    return {"description": provision.FORMER_SSH_RULE if former else provision.SSH_RULE, "direction": "in",
            "protocol": "tcp", "port": str(port), "source_ips": sources}


def test_the_firewall_lets_in_only_the_configured_ssh_port_when_nothing_moves():
    assert provision.firewall_rules(HetznerTarget()) == [_ssh_rule(22, ANYWHERE), *WEB]
    target = HetznerTarget(ssh_port=2222, ssh_from=["192.0.2.0/24"])
    assert provision.firewall_rules(target) == [_ssh_rule(2222, ["192.0.2.0/24"]), *WEB]


def test_while_sshd_moves_the_former_port_stays_open_to_the_same_sources():
    target = HetznerTarget(ssh_port=2222, ssh_from=["192.0.2.0/24"])
    assert provision.firewall_rules(target, (22, 2222, 2200)) == [
        _ssh_rule(2222, ["192.0.2.0/24"]), _ssh_rule(22, ["192.0.2.0/24"], former=True),
        _ssh_rule(2200, ["192.0.2.0/24"], former=True), *WEB]


def _rule(port, description="ssh", direction="in", protocol="tcp"):
    return SimpleNamespace(port=port, description=description, direction=direction, protocol=protocol)


def _client(server, firewall):
    return SimpleNamespace(servers=SimpleNamespace(get_by_name=lambda name: server),
                           firewalls=SimpleNamespace(get_by_name=lambda name: firewall))


def test_the_open_ssh_ports_are_read_from_the_existing_firewall():
    config = config_of(target={"kind": "hetzner", "ssh_port": 2222})
    rules = [_rule("22"), _rule("2200", provision.FORMER_SSH_RULE), _rule("80", "http"),
             _rule(None, "ping", protocol="icmp"), _rule("2022", direction="out"), _rule("2023", protocol="udp"),
             _rule("3000-3010"), _rule("4000", None)]
    assert provision.open_ssh_ports(_client(object(), SimpleNamespace(rules=rules)), config) == (22, 2200)
    # A new server listens on the configured port from its first boot: nothing to keep open.
    assert provision.open_ssh_ports(_client(None, SimpleNamespace(rules=rules)), config) == ()
    assert provision.open_ssh_ports(_client(object(), None), config) == ()


def test_provisioning_while_moving_keeps_the_former_port_and_skips_the_wait_on_the_new_one():
    config = config_of(target={"kind": "hetzner", "ssh_port": 2222})
    plan = SimpleNamespace(dns_records=[])
    moving = provision.playbook_vars(config, plan, ["ssh-ed25519 AAAA k"], ADMIN_USER, None, (22,))["cloud"]
    assert moving["ssh_port_moving"] is True
    assert [r["port"] for r in moving["firewall_rules"] if r["protocol"] == "tcp"] == ["2222", "22", "80", "443"]
    settled = provision.playbook_vars(config, plan, ["ssh-ed25519 AAAA k"], ADMIN_USER, None)["cloud"]
    assert settled["ssh_port_moving"] is False
    assert [r["port"] for r in settled["firewall_rules"] if r["protocol"] == "tcp"] == ["2222", "80", "443"]


def test_closing_the_former_ports_writes_the_rules_of_the_configured_port_only(monkeypatch, tmp_path):
    config = config_of(target={"kind": "hetzner", "ssh_port": 2222, "ssh_from": ["192.0.2.0/24"]})
    calls = []
    monkeypatch.setenv("HCLOUD_TOKEN", "test-token")
    monkeypatch.setattr(provision, "run_playbook",
                        lambda playbook, inventory, variables, **kw: calls.append((playbook, variables, kw))
                        or SimpleNamespace(changed=1))
    assert provision.close_former_ssh_ports(config, tmp_path, ADMIN_USER) == 1
    (playbook, variables, kw), = calls
    assert playbook == provision.FIREWALL_PLAYBOOK and kw["secrets"] == ["test-token"]
    assert variables["cloud"]["firewall_rules"] == [_ssh_rule(2222, ["192.0.2.0/24"]), *WEB]
    # Every cloud.* the playbook reads is given (an undefined one fails only on a real run).
    text = (ANSIBLE / "playbooks" / provision.FIREWALL_PLAYBOOK).read_text()
    used = set(re.findall(r"\bcloud\.([a-z_]+)(?:\.([a-z_]+))?", text))
    assert used == {("names", "firewall"), ("labels", ""), ("firewall_rules", "")}
    assert variables["cloud"]["names"]["firewall"] == f"{config.project}-firewall"


# --- up(): the Cloud Firewall closes the former port only after sshd has moved -------------

@pytest.fixture
def hetzner_up(monkeypatch, tmp_path):
    events: list = []
    state = SimpleNamespace(events=events, former=(22,), fail=None)

    def fake_provision(config, project_dir, admin_user, progress=None):
        events.append("provision")
        return provision.Provisioned("203.0.113.7", 0, 0.0, SimpleNamespace(), state.former)

    def fake_configure(target, project_dir, options, progress=None, former_ports=()):
        events.append(("configure", target.host, target.port, former_ports))
        if state.fail:
            raise state.fail
        return UpResult(host=target.host, port=target.port, admin_user=ADMIN_USER, connected_as="root",
                        changed=0, elapsed=0.0)

    monkeypatch.setattr(provision, "provision", fake_provision)
    monkeypatch.setattr(provision, "private_key_of", lambda target, project_dir: tmp_path / "id")
    monkeypatch.setattr(provision, "close_former_ssh_ports", lambda *a, **k: events.append("close") or 1)
    monkeypatch.setattr(host, "configure_ssh_host", fake_configure)
    state.up = lambda: ops_up.up(Project(config_of(target={"kind": "hetzner", "ssh_port": 2222}), tmp_path),
                                 UpOptions(deploy=False))
    return state


def test_up_closes_the_former_port_after_sshd_answered_on_the_new_one(hetzner_up):
    hetzner_up.up()
    assert hetzner_up.events == ["provision", ("configure", "203.0.113.7", 2222, (22,)), "close"]


def test_up_keeps_the_former_port_open_when_the_move_failed(hetzner_up):
    hetzner_up.fail = AiniError("port 2222 cannot be reached from here")
    with pytest.raises(AiniError):
        hetzner_up.up()
    assert "close" not in hetzner_up.events


def test_up_leaves_the_firewall_alone_when_nothing_moves(hetzner_up):
    hetzner_up.former = ()
    hetzner_up.up()
    assert hetzner_up.events == ["provision", ("configure", "203.0.113.7", 2222, ())]


# --- cloud-init writes what the base role would -------------------------------------------

@pytest.mark.parametrize("ports", [[2222], [22, 2222]])
def test_the_port_file_lists_every_port_sshd_is_told_to_listen_on(ports):
    rendered = _render_port_template(ports)
    assert re.findall(r"^Port (\d+)$", rendered, re.M) == [str(p) for p in ports]
    if len(ports) == 1:
        # The role compares a rendering of its template with the file on the server: the
        # file cloud-init wrote must be byte for byte the same, or the first run restarts sshd.
        assert rendered == provision.sshd_port_conf(ports[0])


def test_cloud_init_puts_sshd_on_the_configured_port_from_the_first_boot():
    doc = yaml.safe_load(provision.user_data(ADMIN_USER, ["ssh-ed25519 AAAA k"], 2222))
    role_file = yaml.safe_load((ANSIBLE / "roles" / "base" / "vars" / "main.yml").read_text())["base_files"]["sshd_port"]
    assert doc["write_files"] == [{"path": role_file["dest"], "owner": "root:root", "permissions": role_file["mode"],
                                   "content": _render_port_template([2222])}]
    assert "write_files" not in yaml.safe_load(provision.user_data(ADMIN_USER, ["ssh-ed25519 AAAA k"], 22))


def _render_port_template(ports: list[int]) -> str:
    # As Ansible renders a template: trim_blocks on, the trailing newline kept.
    template = (ANSIBLE / "roles" / "base" / "templates" / "sshd-port.conf.j2").read_text()
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(base_sshd_ports=ports)
