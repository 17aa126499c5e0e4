"""Hetzner Cloud API simulator for tests: stateful, in-process or standalone.

In a test::

    from tests.harness.hcloud_sim import Simulator, Faults

    faults = Faults(seed=1)
    faults.rate_limit(count=2, match="GET /servers")
    with Simulator(token="T", action_delay=0.05, faults=faults) as sim:
        client = hcloud.Client("T", api_endpoint=sim.url)

Standalone (from the repository root)::

    python -m tests.harness.hcloud_sim --port 8000 --token T

then point the tools at it:

* hcloud-python: ``hcloud.Client(token="T", api_endpoint="http://127.0.0.1:8000/v1")``
* Ansible ``hetzner.hcloud.*`` modules: ``api_endpoint: http://127.0.0.1:8000/v1`` and
  ``api_token: T`` on each task, or the environment ``HCLOUD_ENDPOINT`` / ``HCLOUD_TOKEN``
* the ``hcloud`` CLI: ``HCLOUD_ENDPOINT=http://127.0.0.1:8000/v1 HCLOUD_TOKEN=T hcloud server list``

See README.md beside this file for resources, errors, faults and hooks.
"""

from .errors import ApiError
from .faults import ActionRule, Decision, Faults, RequestRule, SequenceRule
from .server import Exchange, RequestRecord, Simulator
from .state import Action, Hooks, State

__all__ = ["Simulator", "Faults", "State", "Action", "Hooks", "ApiError", "Exchange", "RequestRecord",
           "Decision", "RequestRule", "SequenceRule", "ActionRule"]
