"""Run the Hetzner Cloud API simulator on its own.

    python -m tests.harness.hcloud_sim --port 8000 --token T [--action-delay 1.0]
        [--server-limit 10] [--rate-limit 3600] [--seed 0] [--random-errors 0.05] [-v]

Then::

    export HCLOUD_ENDPOINT=http://127.0.0.1:8000/v1 HCLOUD_TOKEN=T
    hcloud server list                     # hcloud CLI
    python -c 'import hcloud; print(hcloud.Client("T", api_endpoint="http://127.0.0.1:8000/v1").locations.get_all())'
    ansible localhost -m hetzner.hcloud.server_info   # Ansible reads HCLOUD_ENDPOINT/HCLOUD_TOKEN

State lives in memory and is lost when the process stops.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .faults import Faults
from .server import Simulator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.harness.hcloud_sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--token", action="append", help="accepted API token (repeatable; default 'test-token')")
    p.add_argument("--action-delay", type=float, default=1.0, help="seconds an action stays running")
    p.add_argument("--server-limit", type=int, default=None, help="server quota")
    p.add_argument("--rate-limit", type=int, default=3600, help="requests per bucket (refilled 1/s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    p.add_argument("--random-errors", type=float, default=0.0,
                   help="probability of a random 429/502/503/504 per request")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s", stream=sys.stderr)
    faults = Faults(seed=args.seed)
    if args.random_errors:
        faults.random_errors(args.random_errors)
    sim = Simulator(args.host, args.port, tokens=args.token or ["test-token"], action_delay=args.action_delay,
                    server_limit=args.server_limit, faults=faults, rate_limit=args.rate_limit)
    url = sim.start()
    print(f"hcloud simulator listening on {url}  (HCLOUD_ENDPOINT={url})", flush=True)
    sim.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
