"""Wall time of the answers the unit tests check for content only: hostile aini.yml files
refused by `aini validate`, damaged break-glass files refused by decrypt, certificate checks
of silent hosts, and `status` of the whole stack (canned Docker answers, one real TLS server).

    .venv/bin/python bench/bounds.py

A shared machine is noisy, so each figure comes with a ratio to a floor measured in the
same run (a valid file's validate, a genuine decrypt, one timeout). Intentions, not
assertions: a hostile file refused within about a second, a damaged break-glass file
refused well before a genuine decrypt finishes, ten silent hosts in about one timeout
(concurrent, not ten), the whole stack's status well under a second. Writes
bench/results/bounds.json.
"""
from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aini.cli import app  # noqa: E402
from aini.config import validate_data  # noqa: E402
from aini.controlplane import breakglass as bg  # noqa: E402
from aini import project as aini_project  # noqa: E402
from aini.deploy import record  # noqa: E402
from aini.ops import status  # noqa: E402
from aini.infra import localca  # noqa: E402
from tests.unit.ops.test_status import (  # noqa: E402
    TOOLS, FakeDocker, TlsServer, deployed_manifest, healthy_rows, local_data)

RUNS = 5
SILENT_HOSTS = 10
SILENT_TIMEOUT = 0.5

# The largest instance of each hostile strategy in tests/unit/test_hostile_config.py.
HOSTILE = {
    "alias_bomb_60": "a: &a [" + ",".join(["x"] * 9) + "]\n" + "".join(
        f"{chr(98 + i % 20)}{i}: &{chr(98 + i % 20)}{i} ["
        + ",".join([f"*{chr(97 + (i - 1) % 20) if i else 'a'}{i - 1 if i else ''}"] * 9) + "]\n" for i in range(1, 60)),
    "nested_20000": "domain: " + "[" * 20000 + "]" * 20000,
    "indented_3000": "domain:\n" + "".join(" " * i + f"k{i}:\n" for i in range(3000)),
    "string_2MB": "domain: " + "x" * 2_000_000 + "\n",
    "python_tag": "!!python/object/apply:os.system ['true']\n",
}
VALID = "domain: example.com\nemail: admin@example.com\n"


def median(fn, runs: int = RUNS) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def validate_figures(tmp: Path) -> dict:
    runner = CliRunner()
    path = tmp / "aini.yml"

    def validate(text: str, code: int):
        def run():
            result = runner.invoke(app, ["-c", str(path), "validate"])
            if result.exit_code != code:
                raise SystemExit(f"validate exited {result.exit_code}, not {code}: {result.output[:500]}")
        path.write_text(text)
        return median(run)

    floor = validate(VALID, 0)
    figures = {"valid_s": round(floor, 4)}
    for name, text in HOSTILE.items():
        seconds = validate(text, 2)
        figures[f"{name}_s"] = round(seconds, 4)
        figures[f"{name}_over_valid"] = round(seconds / floor, 1)
    return figures


def breakglass_figures() -> dict:
    passphrase = "correct horse battery staple"
    material = bg.BreakGlass(vault_unseal_keys=("k1", "k2"), vault_root_token="t", consul_bootstrap_token="c")
    data = bg.encrypt(material, passphrase)  # the default (production) cost
    envelope = json.loads(data)
    genuine = median(lambda: bg.decrypt(data, passphrase), runs=3)
    damaged = {
        "not_json": b"not json",
        "version_2": json.dumps({**envelope, "version": 2}).encode(),
        "other_format": json.dumps({**envelope, "format": "x"}).encode(),
        "kdf_n_2pow30": json.dumps({**envelope, "kdf": {**envelope["kdf"], "n": 2**30}}).encode(),
    }
    figures = {"genuine_decrypt_s": round(genuine, 4)}
    for name, blob in damaged.items():
        def refuse(blob=blob):
            try:
                bg.decrypt(blob, passphrase)
            except bg.BreakGlassError:
                return
            raise SystemExit(f"break-glass {name} was not refused")
        seconds = median(refuse)
        figures[f"{name}_refused_ms"] = round(seconds * 1000, 3)
        figures[f"genuine_over_{name}"] = round(genuine / seconds)
    return figures


def status_figures(tmp: Path) -> dict:
    hosts = [f"h{i}.localhost" for i in range(SILENT_HOSTS)]
    with socket.create_server(("127.0.0.1", 0), backlog=32) as silent:
        port = silent.getsockname()[1]
        silent_s = median(lambda: status.check_certificates(hosts, ("127.0.0.1", port), timeout=SILENT_TIMEOUT), runs=3)

    config = validate_data(local_data(), "bench")
    certs = localca.ensure(tmp / "local-ca", "localhost", localca.hostnames(config))
    with TlsServer(certs.cert, certs.key) as server:
        data = local_data(https_port=server.port)
        project = tmp / "project"
        deploy_dir = project / ".aini" / aini_project.DEPLOYED_DIR
        deploy_dir.mkdir(parents=True)
        (project / "aini.yml").write_text(yaml.safe_dump(data))
        config = validate_data(data, "bench")
        (deploy_dir / record.DEPLOYED_MANIFEST).write_text(json.dumps(deployed_manifest(config)))

        def collect():
            report = status.collect(config, project, FakeDocker(healthy_rows(config)), TOOLS)
            if not report.ok:
                raise SystemExit("status of the canned healthy stack is not ok")
        whole_s = median(collect)
        handshakes = len(server.sni) // RUNS
    return {"silent_hosts": SILENT_HOSTS, "silent_timeout_s": SILENT_TIMEOUT,
            "silent_hosts_s": round(silent_s, 3), "silent_hosts_over_timeout": round(silent_s / SILENT_TIMEOUT, 2),
            "whole_stack_status_s": round(whole_s, 4), "whole_stack_handshakes": handshakes}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="aini-bench-bounds-") as tmp:
        result = {"validate": validate_figures(Path(tmp)), "breakglass": breakglass_figures(),
                  "status": status_figures(Path(tmp))}
    for section, figures in result.items():
        print(f"{section}:")
        for key, value in figures.items():
            print(f"  {key:>32}: {value}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bounds.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
