"""Pebble, Let's Encrypt's ACME test CA (Debian package `pebble`), as a local test world.

Pebble issues real certificates over real HTTP-01 validation: its VA resolves the names
through `pebble-challtestsrv` (a DNS stub whose answers the test sets) and connects to
`http_port` there. Pebble's own HTTPS listener needs a certificate: a throwaway CA made
here signs it, and that CA (`listener_ca_pem`) is what an ACME client must trust, i.e.
what aini.yml's `tls.acme_ca` points at. Pebble's issuing root is another, random one per
start: fetch it with `roots_pem()` to verify what was issued.

    world = PebbleWorld(tmp, http_port=5002).start()   # or: with PebbleWorld(...) as world:
    world.directory_url()                               # https://127.0.0.1:<port>/dir
    world.stop()
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

from .docker_engine import apt_install
from .world import build_or_fail

PEBBLE = "pebble"
CHALLTESTSRV = "pebble-challtestsrv"  # shipped in the same Debian package
START_TIMEOUT = 30.0
LETS_ENCRYPT_VALIDITY = 90 * 86400  # seconds


class PebbleError(RuntimeError):
    """Pebble or its DNS stub could not be started or did not answer."""


def ensure_pebble() -> None:
    if not (shutil.which(PEBBLE) and shutil.which(CHALLTESTSRV)):
        apt_install("pebble")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_listener_tls(directory: Path, ips: Iterable[str] = ("127.0.0.1",), names: Iterable[str] = ("localhost",)
                      ) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate it signs for `ips` and `names`.
    Returns (ca.pem, listener.pem, listener.key); the key is 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AINI test ACME listener CA")])

    def builder(subject: x509.Name, public_key) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7)))

    ca = (builder(ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    sans = [*map(x509.DNSName, names), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in sorted(set(ips)))]
    leaf = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]), key.public_key())
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))

    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "listener.pem", directory / "listener.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


class PebbleWorld:
    """Pebble + pebble-challtestsrv as local processes, each in its own process group.

    http_port: where Pebble's VA connects for HTTP-01 (on the address DNS gives the name);
    listen: the address Pebble's ACME API binds: 127.0.0.1, 0.0.0.0 or one address (e.g. the
      sandbox network's gateway, sandbox.WORLD_GATEWAY) so containers reach it;
    extra_ips: more addresses the listener certificate names (e.g. the sandbox network's gateway);
    default_ipv4: the A record challtestsrv gives every name unless add_a() says otherwise.
    """

    def __init__(self, workdir: Path, *, http_port: int = 80, tls_port: int = 443, listen: str = "127.0.0.1",
                 extra_ips: Iterable[str] = (), default_ipv4: str = "127.0.0.1"):
        self.workdir = Path(workdir)
        self.http_port, self.tls_port, self.listen = http_port, tls_port, listen
        self.default_ipv4 = default_ipv4
        # Where this process reaches the API; the listener certificate must name it too.
        self._local = "127.0.0.1" if listen in ("0.0.0.0", "127.0.0.1") else listen
        self.extra_ips = tuple(sorted({*extra_ips, self._local}))
        self.port = free_port(listen)
        self.management_port, self.dns_port, self.challtest_port = free_port(), free_port(), free_port()
        self.listener_ca_pem = self.workdir / "ca.pem"
        self._procs: list[subprocess.Popen] = []

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> Self:
        try:
            ensure_pebble()
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        _, cert, key = make_listener_tls(self.workdir, ["127.0.0.1", *self.extra_ips])
        config = {"pebble": {
            "listenAddress": f"{self.listen}:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(cert), "privateKey": str(key),
            "httpPort": self.http_port, "tlsPort": self.tls_port,
            # Certificates shaped like Let's Encrypt's (90 days, a revocation URI) rather than
            # Pebble's defaults (5 years, none): testssl.sh grades the certificate too. Nothing
            # fetches the URI; Pebble serves no OCSP.
            "certificateValidityPeriod": LETS_ENCRYPT_VALIDITY, "ocspResponderURL": "http://ocsp.pebble.invalid/",
            "externalAccountBindingRequired": False,
        }}
        (self.workdir / "pebble.json").write_text(json.dumps(config, indent=2))
        self._spawn("challtestsrv", [
            CHALLTESTSRV, "-defaultIPv4", self.default_ipv4, "-defaultIPv6", "",
            "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-management", f"127.0.0.1:{self.challtest_port}",
        ])
        self._wait("challtestsrv management", lambda: self._challtest("/set-default-ipv4", {"ip": self.default_ipv4}))
        # NOSLEEP: the VA otherwise waits up to 15 s before each validation.
        # NONCEREJECT=0: Pebble otherwise rejects 5% of valid nonces on purpose (flaky tests).
        self._spawn("pebble", [PEBBLE, "-config", str(self.workdir / "pebble.json"),
                               "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                    {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
        self._wait("pebble directory", lambda: self._get(self._local, self.port, "/dir"))

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        self._procs.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what tests use -----------------------------------------------------------------

    def directory_url(self, host: str | None = None) -> str:
        """The ACME directory as reached at `host` (one of `extra_ips`); by default as this process reaches it."""
        return f"https://{host or self._local}:{self.port}/dir"

    def roots_pem(self) -> str:
        """Pebble's issuing root (new each start): what issued certificates chain up to."""
        return self._get("127.0.0.1", self.management_port, "/roots/0").decode()

    def set_default_ipv4(self, ip: str) -> None:
        self._challtest("/set-default-ipv4", {"ip": ip})

    def add_a(self, host: str, ip: str) -> None:
        self._challtest("/add-a", {"host": host, "addresses": [ip]})

    def log_tails(self, chars: int = 3000) -> str:
        return "".join(f"\n--- {p.name} ---\n{p.read_text(errors='replace')[-chars:]}"
                       for p in sorted(self.workdir.glob("*.log")))

    # --- plumbing -----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        with log:
            self._procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                env={**os.environ, **(env or {})}, start_new_session=True))

    def _wait(self, what: str, probe) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        error: Exception | None = None
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self._procs):
                raise PebbleError(f"{what}: a process exited{self.log_tails()}")
            try:
                probe()
                return
            except (OSError, PebbleError) as e:
                error = e
            time.sleep(0.2)
        raise PebbleError(f"{what} did not answer within {START_TIMEOUT:.0f}s ({error}){self.log_tails()}")

    def _get(self, host: str, port: int, path: str) -> bytes:
        # http.client, not urllib: no proxy from the environment must see these requests.
        context = ssl.create_default_context(cafile=str(self.listener_ca_pem))
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise PebbleError(f"GET {path} on port {port}: HTTP {response.status}")
        return body

    def _challtest(self, path: str, payload: dict) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.challtest_port, timeout=10)
        try:
            conn.request("POST", path, body=json.dumps(payload), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise PebbleError(f"challtestsrv {path}: HTTP {response.status}")


def start_or_fail(workdir: Path, **options) -> PebbleWorld:
    """A started world for a pytest fixture; one that cannot start fails the test, never skips it."""
    return build_or_fail("pebble", "starting pebble and pebble-challtestsrv",
                         lambda: PebbleWorld(workdir, **options).start())
