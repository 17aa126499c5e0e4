"""Contract tests: the simulator driven by the real hcloud-python client and the real
``hetzner.hcloud`` Ansible modules.

Every answer the simulator gives during a test is validated against the Hetzner Cloud
OpenAPI description (see ``openapi_validation.py``); a validation failure, or an unexpected
exception inside the simulator, fails the test even when its assertions passed.

``@pytest.mark.sim(**kwargs)`` passes keyword arguments to the test's :class:`Simulator`
(e.g. ``action_delay``, ``server_limit``, ``rate_limit``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `tests.harness.hcloud_sim` is imported from the repository root
    sys.path.insert(0, str(REPO))

import hcloud  # noqa: E402

from tests.harness.hcloud_sim import Faults, Simulator  # noqa: E402

from .openapi_validation import ResponseValidator, load_openapi  # noqa: E402

TOKEN = "contract-test-token"
ACTION_DELAY = 0.02


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim(**kwargs): keyword arguments for this test's hcloud Simulator")


@pytest.fixture(scope="session")
def openapi():
    return load_openapi()


@pytest.fixture
def sim(request: pytest.FixtureRequest, openapi) -> Simulator:
    marker = request.node.get_closest_marker("sim")
    kwargs = {"token": TOKEN, "action_delay": ACTION_DELAY, "faults": Faults(seed=1234)}
    kwargs.update(marker.kwargs if marker else {})
    simulator = Simulator(**kwargs)
    validator = ResponseValidator(openapi)
    simulator.observers.append(validator)
    request.node._hcloud_sim = (simulator, validator)
    simulator.start()
    yield simulator
    simulator.stop()


def make_client(url: str, token: str = TOKEN, **kwargs) -> hcloud.Client:
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("poll_max_retries", 1000)
    client = hcloud.Client(token, api_endpoint=url, **kwargs)
    # hcloud-python retries 429/502/504/conflict/timeouts with a backoff starting at 1 s and
    # has no public knob for it; keep the retries, make them fast.
    client._client._retry_interval_func = lambda retries: 0.01
    return client


@pytest.fixture
def client(sim: Simulator) -> hcloud.Client:
    return make_client(sim.url)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield  # re-raises when the test itself failed
    pair = getattr(item, "_hcloud_sim", None)
    if pair is not None:
        simulator, validator = pair
        problems = []
        if validator.failures:
            problems.append(f"{len(validator.failures)} of {validator.checked} simulator answers do not "
                            "match the OpenAPI description:\n\n" + "\n\n".join(validator.failures[:10]))
        if simulator.errors:
            problems.append("the simulator raised:\n" + "\n".join(simulator.errors[:3]))
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)
    return result
