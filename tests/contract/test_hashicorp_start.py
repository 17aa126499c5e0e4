"""The Consul, Vault and OpenBao TEST DOUBLES start as their upstream images do
(tests/harness/images/doubles/hashicorp_start.py; facts in tests/harness/images/UPSTREAM.md):
as the image's user after the entrypoint's ownership rules, with the rendered configuration
read by an HCL parser, refusing where upstream refuses. Each refusal is shown on the broken
input, and AINI's rendered files are shown to pass.

Containers run on this machine's Docker engine (the world fails, never skips, without one).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aini import catalog
from aini.render.bundle import render
from aini.catalog.networks import FIXED_IPS, PROXY_SUBNET
from tests.harness import stack_images
from tests.harness.world import build_or_fail
from tests.unit.conftest import config_of, seed_store
from tests.contract.helpers import docker

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    return build_or_fail("contract", "the Consul/Vault/OpenBao double images",
                         lambda: {name: stack_images.double_image(name) for name in ("consul", "vault", "openbao")})


def write_bundle(root: Path, **overrides) -> Path:
    """AINI's bundle for a config, written out (consul.hcl, vault.hcl, ...)."""
    bundle = render(config_of(**overrides), seed_store(root / ".aini"))
    for name, file in bundle.items():
        path = root / "bundle" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.content)
        path.chmod(0o600 if file.private else 0o644)
    return root / "bundle"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Containers, networks and volumes made by a test, removed afterwards."""
    made: list[str] = []
    yield made
    for kind, name in reversed([m.split(":", 1) for m in made]):
        docker(*{"c": ("rm", "-f", "-v"), "n": ("network", "rm"), "v": ("volume", "rm", "-f")}[kind], name,
               check=False)


def _name(names: list[str], kind: str, what: str) -> str:
    name = f"aini-contract-{what}-{uuid.uuid4().hex[:6]}"
    names.append(f"{kind}:{name}")
    return name


def network(names: list[str], subnet: str | None = None, internal: bool = False) -> str:
    name = _name(names, "n", "net")
    args = ["network", "create", *(["--subnet", subnet] if subnet else []), *(["--internal"] if internal else [])]
    r = docker(*args, name, check=False)
    if r.returncode != 0:
        pytest.fail(f"contract world unavailable: docker network create {subnet or ''}: {r.stderr.strip()} "
                    "(an AINI stack on this engine holds the proxy subnet? remove it)", pytrace=False)
    return name


def volume(names: list[str]) -> str:
    name = _name(names, "v", "vol")
    docker("volume", "create", name)
    return name


def create(names: list[str], image: str, *args: str, networks: tuple[tuple[str, str], ...] = (),
           command: tuple[str, ...] = ()) -> str:
    """`docker create` on the first network, `docker network connect` to the others (a
    container on several networks from its first start, as compose does)."""
    name = _name(names, "c", "double")
    first, *rest = networks or (("bridge", ""),)
    ip = ["--ip", first[1]] if first[1] else []
    docker("create", "--name", name, "--network", first[0], *ip, *args, image, *command)
    for net, address in rest:
        docker("network", "connect", *(["--ip", address] if address else []), net, name)
    docker("start", name)
    return name


def exited_with(name: str, timeout: float = 30) -> tuple[int, str]:
    """The container's exit code and log, once it stopped (the double refused to start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = docker("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", name).stdout.split()
        if state[0] == "false":
            logs = docker("logs", name)
            return int(state[1]), logs.stdout + logs.stderr
        time.sleep(0.3)
    logs = docker("logs", name)
    raise AssertionError(f"{name} still runs after {timeout}s; log:\n{logs.stdout}{logs.stderr}")


def answers(name: str, check: tuple[str, ...], timeout: float = 30) -> str:
    """Runs the catalog's health check command inside the container until it succeeds."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        r = docker("exec", name, *check, check=False)
        if r.returncode == 0:
            return r.stdout
        last = r.stdout + r.stderr
        if docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
            break
        time.sleep(0.3)
    logs = docker("logs", name, check=False)
    raise AssertionError(f"{name}: {' '.join(check)} never succeeded ({last}); log:\n{logs.stdout}{logs.stderr}")


def health_cmd(service: str) -> tuple[str, ...]:
    test = catalog.by_name(service).health.test
    assert test and test[0] == "CMD"
    return tuple(test[1:])


@contextmanager
def hcl(tmp_path: Path, name: str, text: str) -> Iterator[Path]:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o644)
    yield path


# -------------------------------------------------------------------------------- consul


def test_consul_with_the_rendered_config_binds_its_proxy_address_and_serves_http_only_there(
        images, rendered, names):
    proxy = network(names, PROXY_SUBNET)
    internal = network(names, internal=True)
    consul = create(names, images["consul"], "-v", f"{rendered / 'consul/consul.hcl'}:/consul/config/consul.hcl:ro",
                    "-v", f"{volume(names)}:/consul/data",
                    networks=((proxy, FIXED_IPS["consul"]), (internal, "")),
                    command=catalog.by_name("consul").command)
    assert answers(consul, health_cmd("consul")).strip() == '"127.0.0.1:8300"'
    assert docker("exec", consul, "stat", "-c", "%U %u", "/consul/data").stdout.split() == ["consul", "100"]
    assert docker("exec", consul, "stat", "-c", "%u", "/proc/1").stdout.strip() == "100"  # PID 1 dropped to consul
    # From a neighbour on the internal network, the API is not there; on the proxy address it is.
    internal_ip = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{internal}").IPAddress}}}}',
                         consul).stdout.strip()
    probe = ("python3", "-c", "import socket,sys; socket.create_connection((sys.argv[1], 8500), timeout=3)")
    neighbour = create(names, images["consul"], "--entrypoint", "sleep", networks=((internal, ""),),
                       command=("300",))
    assert docker("exec", neighbour, *probe, internal_ip, check=False).returncode != 0
    peer = create(names, images["consul"], "--entrypoint", "sleep", networks=((proxy, ""),), command=("300",))
    assert docker("exec", peer, *probe, FIXED_IPS["consul"], check=False).returncode == 0


def test_consul_without_a_bind_address_on_two_networks_refuses_to_start(images, names, tmp_path):
    text = (rendered_text := (
        'datacenter = "aini"\ndata_dir = "/consul/data"\nserver = true\nbootstrap_expect = 1\n'
        'client_addr = "0.0.0.0"\nacl {\n  enabled = true\n  default_policy = "deny"\n}\n'))
    with hcl(tmp_path, "consul.hcl", text) as path:
        one, two = network(names), network(names, internal=True)
        consul = create(names, images["consul"], "-v", f"{path}:/consul/config/consul.hcl:ro",
                        networks=((one, ""), (two, "")), command=("agent",))
        code, log = exited_with(consul)
    assert code == 1 and "Multiple private IPv4 addresses found. Please configure one with 'bind' and/or " \
        "'advertise'." in log
    # The same file on one network starts: the refusal is about the addresses, not the file.
    with hcl(tmp_path, "single.hcl", rendered_text) as path:
        single = create(names, images["consul"], "-v", f"{path}:/consul/config/consul.hcl:ro",
                        networks=((network(names), ""),), command=("agent",))
        answers(single, health_cmd("consul"))


def test_consul_refuses_an_unknown_key_and_an_address_it_does_not_have(images, names, tmp_path):
    with hcl(tmp_path, "consul.hcl", 'data_dir = "/consul/data"\nbind_adr = "10.87.0.4"\n') as path:
        code, log = exited_with(create(names, images["consul"], "-v", f"{path}:/consul/config/consul.hcl:ro",
                                       command=("agent",)))
    assert code == 1 and "invalid config key bind_adr" in log
    with hcl(tmp_path, "acl.hcl", 'data_dir = "/consul/data"\nacl {\n  enabeld = true\n}\n') as path:
        code, log = exited_with(create(names, images["consul"], "-v", f"{path}:/consul/config/consul.hcl:ro",
                                       command=("agent",)))
    assert code == 1 and "invalid config key acl.enabeld" in log
    with hcl(tmp_path, "bind.hcl", 'data_dir = "/consul/data"\nbind_addr = "10.87.0.4"\n') as path:
        code, log = exited_with(create(names, images["consul"], "-v", f"{path}:/consul/config/consul.hcl:ro",
                                       command=("agent",)))
    assert code == 1 and "cannot assign requested address" in log


def test_consul_takes_its_gossip_key_from_the_environment_and_refuses_a_malformed_one(images, rendered, names):
    """The entrypoint writes CONSUL_LOCAL_CONFIG to /consul/config/local.json; `encrypt` must be
    standard base64 of 16, 24 or 32 bytes; the first start keeps it in the serf keyring."""
    from aini.store import generate

    key = generate(next(s for s in catalog.by_name("consul").secrets if s.name == "consul_gossip_key"))
    mounts = ("-v", f"{rendered / 'consul/consul.hcl'}:/consul/config/consul.hcl:ro")
    proxy = network(names, PROXY_SUBNET)
    consul = create(names, images["consul"], *mounts, "-e", f'CONSUL_LOCAL_CONFIG={{"encrypt": "{key}"}}',
                    "-v", f"{volume(names)}:/consul/data", networks=((proxy, FIXED_IPS["consul"]),),
                    command=catalog.by_name("consul").command)
    answers(consul, health_cmd("consul"))
    assert key in docker("exec", consul, "cat", "/consul/data/serf/local.keyring").stdout
    docker("rm", "-f", consul)
    for bad in ("not-base64!", "c2hvcnQ="):  # not base64; 5 bytes
        refused = create(names, images["consul"], *mounts, "-e", f'CONSUL_LOCAL_CONFIG={{"encrypt": "{bad}"}}',
                         networks=((proxy, FIXED_IPS["consul"]),), command=catalog.by_name("consul").command)
        code, log = exited_with(refused)
        assert code == 1 and ("encrypt has invalid key" in log or "key size must be 16, 24 or 32 bytes" in log), log
        docker("rm", "-f", refused)


# --------------------------------------------------------------------------- vault, openbao


@pytest.mark.parametrize("flavor", ["vault", "openbao"])
def test_vault_raft_on_the_rendered_path_and_a_fresh_volume_starts_as_the_image_user(
        images, names, flavor, tmp_path):
    rendered = write_bundle(tmp_path, services__vault__flavor=flavor)
    spec = catalog.by_name(flavor)
    (mount,) = spec.files.mounts
    (data,) = spec.volumes
    env = spec.env(catalog.context(config_of(services__vault__flavor=flavor))) if spec.env else {}
    vault = create(names, images[flavor], "-v", f"{rendered / 'vault/vault.hcl'}:{mount.target}:ro",
                   "-v", f"{volume(names)}:{data.target}", *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
                   command=spec.command)
    answers(vault, health_cmd(flavor))
    owner = docker("exec", vault, "stat", "-c", "%U", f"{data.target}/vault.db").stdout.strip()
    assert owner == flavor
    # A restart on the same volume keeps working (a new volume is the start above).
    docker("restart", vault)
    answers(vault, health_cmd(flavor))


@pytest.mark.parametrize("flavor", ["vault", "openbao"])
def test_vault_raft_on_a_root_owned_volume_refuses_to_start(images, names, tmp_path, flavor):
    prefix = "/vault" if flavor == "vault" else "/openbao"
    text = ('storage "raft" {\n  path = "%s/data"\n  node_id = "aini"\n}\n'
            'listener "tcp" {\n  address = "0.0.0.0:8200"\n  tls_disable = true\n}\n'
            'cluster_addr = "http://127.0.0.1:8201"\napi_addr = "http://127.0.0.1:8200"\ndisable_mlock = true\n'
            % prefix)
    with hcl(tmp_path, "vault.hcl", text) as path:
        code, log = exited_with(create(names, images[flavor], "-v", f"{path}:{prefix}/config/vault.hcl:ro",
                                       "-v", f"{volume(names)}:{prefix}/data", command=("server",)))
    assert code == 1 and f"open {prefix}/data/vault.db: permission denied" in log


def test_vault_refuses_an_unknown_key_and_raft_without_cluster_addr(images, names, tmp_path):
    base = ('storage "raft" {\n  path = "/vault/file"\n}\n'
            'listener "tcp" {\n  address = "0.0.0.0:8200"\n  tls_disable = true\n}\n')
    with hcl(tmp_path, "typo.hcl", base + 'cluster_addr = "http://127.0.0.1:8201"\ndisable_mlok = true\n') as path:
        code, log = exited_with(create(names, images["vault"], "-v", f"{path}:/vault/config/vault.hcl:ro",
                                       command=("server",)))
    assert code == 1 and "unknown or unsupported field disable_mlok" in log
    with hcl(tmp_path, "nocluster.hcl", base) as path:
        code, log = exited_with(create(names, images["vault"], "-v", f"{path}:/vault/config/vault.hcl:ro",
                                       command=("server",)))
    assert code == 1 and "Cluster address must be set when using raft storage" in log


def test_the_doubles_carry_only_the_tools_of_their_upstream_image(images, names):
    """A health check calling a tool the upstream image lacks fails here too."""
    vault = create(names, images["vault"], "--entrypoint", "sleep", command=("300",))
    assert docker("exec", vault, "wget", "--help", check=False).returncode in (0, 1)  # busybox wget exists
    assert docker("exec", vault, "curl", "--version", check=False).returncode != 0
    consul = create(names, images["consul"], "--entrypoint", "sleep", command=("300",))
    assert docker("exec", consul, "curl", "--version", check=False).returncode == 0
