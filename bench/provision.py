"""API requests and wall time of a full Hetzner provisioning and of a no-op re-run, through
the real `hetzner.hcloud` modules against the local API simulator (tests/harness/hcloud_sim).

The real API allows 3600 requests per hour; target: under 60 requests for a full `up`.
The new server's SSH is a banner-only double on 127.0.0.1. Writes bench/results/provision.json.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aini.infra import provision  # noqa: E402
from aini.config import validate_data  # noqa: E402
from tests.contract.helpers import ssh_public_key  # noqa: E402
from tests.harness.hcloud_sim import Simulator  # noqa: E402

MUTATING = {"POST", "PUT", "DELETE"}


def banner() -> int:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve():
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def main() -> None:
    port = banner()
    sim = Simulator(token="bench", action_delay=0.05, on_server_create=lambda s: s["public_net"]["ipv4"].update(ip="127.0.0.1"))
    os.environ.update(HCLOUD_TOKEN="bench", HCLOUD_ENDPOINT=sim.start())
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "id.pub").write_text(ssh_public_key("bench") + "\n")
        config = validate_data({"domain": "example.com", "email": "a@example.com",
                                "target": {"kind": "hetzner", "ssh_keys": ["id.pub"], "ssh_port": port}}, "bench")
        for run in ("full", "noop"):
            before = len(sim.requests)
            start = time.perf_counter()
            provision.provision(config, project, "aini")
            seconds = time.perf_counter() - start
            made = sim.requests[before:]
            result[run] = {"requests": len(made), "mutating": sum(r[0] in MUTATING for r in made), "seconds": round(seconds, 2)}
    sim.stop()
    result["target_full_requests"] = 60
    for key, value in result.items():
        print(f"{key:>22}: {value}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "provision.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
