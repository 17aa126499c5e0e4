"""The e2e world: the whole default stack deployed by aini's deploy step on this machine's
Docker engine (target `local`, domain `localhost`), with every image from
tests/harness/stack_images.py through aini.yml's `images.overrides`.

Traefik listens on 127.0.0.1 and free ports (target.bind / http_port / https_port), so a
test run never takes the machine's 80/443 nor listens beyond loopback.
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from aini import catalog
from aini.config import validate_data
from aini.project import STORE_DIR
from aini.store import SecretStore
from aini import project as aini_project
from aini.project import Project
from aini.deploy import apply
from aini.docker import compose as compose_cmds
from aini.docker import restic
from aini.ops import up as ops_up
from aini.sites import local as sites_local

PROJECT = "e2e"
LABEL = f"aini.project={PROJECT}"
WAIT = 300  # per group: bounded, and far above what the stack needs here
PASSPHRASE = "aini-e2e-break-glass-passphrase"  # encrypts the test's Vault/Consul break-glass file
PASSPHRASE_ENV = {"AINI_BREAKGLASS_PASSPHRASE": PASSPHRASE}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    peer_names: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def cookie(self) -> str:
        return "; ".join(v.split(";", 1)[0] for k, v in self.headers.items() if k.lower() == "set-cookie")


class _SniConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with SNI and certificate checks for `server_name`."""

    def __init__(self, server_name: str, port: int, context: ssl.SSLContext, timeout: float):
        super().__init__("127.0.0.1", port, context=context, timeout=timeout)
        self.server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.server_name)


@dataclass
class Stack:
    project_dir: Path
    data: dict
    http_port: int
    https_port: int
    docker: str
    deploy_seconds: float = 0.0
    figures: dict = field(default_factory=dict)

    # -- config and deploy
    @property
    def config(self):
        return validate_data(self.data, "e2e aini.yml")

    @property
    def store(self) -> SecretStore:
        return SecretStore(self.project_dir / STORE_DIR)

    @property
    def deploy_dir(self) -> Path:
        return self.project_dir / STORE_DIR / aini_project.DEPLOYED_DIR

    @property
    def ca(self) -> Path:
        return self.project_dir / STORE_DIR / "local-ca" / "ca.crt"

    def __post_init__(self) -> None:
        # Traefik on loopback and free ports (aini.yml's local target), never the machine's 80/443.
        self.data["target"].update(bind="127.0.0.1", http_port=self.http_port, https_port=self.https_port)

    def up(self, data: dict | None = None, wait_timeout: int = WAIT, console=None, **kw) -> apply.DeployResult:
        """Deploy `data` (default: the stack's own aini.yml)."""
        from aini.controlplane.bootstrap import Passphrase

        config = validate_data(data, "e2e aini.yml") if data is not None else self.config
        # as a user's: the recovery kit stored with a backup carries the file itself
        (self.project_dir / "aini.yml").write_text(yaml.safe_dump(data or self.data, sort_keys=False))
        return ops_up.up_local(Project(config, self.project_dir), wait_timeout=wait_timeout, console=console,
                               passphrase=Passphrase(environ=PASSPHRASE_ENV), **kw)

    def host(self, service: str) -> str:
        spec = catalog.by_name(service)
        return f"{catalog.subdomain_of(spec, self.config)}.{self.config.domain}"

    # -- HTTP through Traefik, only to 127.0.0.1
    def https(self, host: str, path: str = "/", *, auth: tuple[str, str] | None = None, method: str = "GET",
              body: bytes | None = None, headers: dict | None = None, timeout: float = 15,
              check_hostname: bool = True, verify: bool = True) -> Response:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = check_hostname  # the chain is verified either way...
        if not verify:  # ...unless the answer is Traefik's own default certificate
            context = ssl._create_unverified_context()
        conn = _SniConnection(host, self.https_port, context, timeout)
        hdrs = {"Host": host, **(headers or {})}
        if auth:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            names = [v for k, v in conn.sock.getpeercert().get("subjectAltName", ()) if k == "DNS"]
            return Response(resp.status, resp.headers, data, names)
        finally:
            conn.close()

    def http(self, host: str, path: str = "/", timeout: float = 10) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def wait_https(self, host: str, path: str, ok=lambda r: r.status == 200, timeout: float = 60, **kw) -> Response:
        """Traefik reloads routes and certificates within a few seconds; poll, bounded."""
        deadline = time.monotonic() + timeout
        last: Response | Exception | None = None
        while time.monotonic() < deadline:
            try:
                last = self.https(host, path, **kw)
                if ok(last):
                    return last
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                last = exc
            time.sleep(1)
        raise AssertionError(f"https://{host}{path} not as expected within {timeout:.0f}s: {last!r}")

    def tls_refused(self, host: str, timeout: float = 60) -> bool:
        """No certificate names `host`, and Traefik's sniStrict gives it no TLS at all (not its
        default certificate); polled, as Traefik reloads certificates within a few seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.https(host, "/", verify=False)
            except ssl.SSLError:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(1)

    def admin(self) -> tuple[str, str]:
        return self.config.admin.user, self.store.get("admin_password") or ""

    # -- docker
    def docker_run(self, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker, *args], capture_output=True, text=True, timeout=timeout, env=env)

    def docker_cmd(self, *args: str, check: bool = True, env: dict | None = None, timeout: float = 120) -> str:
        r = self.docker_run(*args, env=env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])}: {r.stderr[-1000:]}")
        return r.stdout

    def containers(self) -> dict[str, tuple[str, str]]:
        """Container name -> (id, state) for every container of this stack."""
        out = self.docker_cmd("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}\t{{.ID}}\t{{.State}}")
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        return {name: (cid, state) for name, cid, state in rows}

    def compose(self, group: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = [*compose_cmds.compose_base(sites_local.find_tools(), self.deploy_dir, group), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=sites_local.subprocess_env())

    def teardown(self) -> None:
        """Every container, volume and network this stack made (volumes included)."""
        if self.deploy_dir.exists():
            groups = sorted((p.name for p in self.deploy_dir.iterdir() if (p / "compose.yml").exists()),
                            key=lambda g: (g == "traefik", g))  # traefik's group owns the proxy network
            for group in groups:
                self.compose(group, "down", "--volumes", "--remove-orphans", "--timeout", "5")
        for name in self.containers():
            self.docker_cmd("rm", "-f", "-v", name, check=False)
        for kind in ("volume", "network"):
            for name in self.docker_cmd(kind, "ls", "-q", "--filter", f"label={LABEL}", check=False).split():
                self.docker_cmd(kind, "rm", name, check=False)
        self.docker_cmd("volume", "rm", restic.CACHE_VOLUME, check=False)  # restic's cache: made by `docker run -v`
        for group in {s.group for s in catalog.CATALOG} - {"traefik"}:  # internal networks of killed runs
            if not self.docker_cmd("network", "inspect", f"aini-{group}", check=False).strip() in ("", "[]"):
                self.docker_cmd("network", "rm", f"aini-{group}", check=False)


def stack_config(overrides: dict[str, str], **services) -> dict:
    data = {
        "project": PROJECT,
        "domain": "localhost",
        "email": "admin@example.com",
        "target": {"kind": "local"},
        "images": {"overrides": dict(overrides)},
    }
    if services:
        data["services"] = services
    return data


def foreign_resources(docker: str) -> list[str]:
    """Containers and volumes of another AINI stack on this engine: the e2e stack uses the
    same fixed names, so the run refuses rather than touching them."""
    containers = {s.container for s in catalog.CATALOG}
    volumes = {f"aini-{v.name}" for s in catalog.CATALOG for v in s.volumes if not v.name.startswith(("/", "./"))}

    def rows(*args: str) -> list[list[str]]:
        out = subprocess.run([docker, *args], capture_output=True, text=True, timeout=60).stdout
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    found = [f"container {r[0]}" for r in rows("ps", "-a", "--format", '{{.Names}}\t{{.Label "aini.project"}}')
             if r[0] in containers and r[-1] != PROJECT]
    found += [f"volume {r[0]}" for r in rows("volume", "ls", "--format", '{{.Name}}\t{{.Label "aini.project"}}')
              if r[0] in volumes and r[-1] != PROJECT]
    return found


def dump_figures(path: Path, figures: dict) -> None:
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
