"""Fixtures of the e2e suite: the whole stack on this machine's Docker engine.

A world that cannot be built is a failure, never a skip: a skipped e2e suite would look
green while proving nothing.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # makes `tests.harness` importable

from tests.e2e.stack import Stack, foreign_resources, free_port, stack_config  # noqa: E402
from tests.harness import stack_images  # noqa: E402
from tests.harness.docker_engine import ensure_engine  # noqa: E402
from tests.harness.world import build_or_fail  # noqa: E402

FIGURES = Path(os.environ.get("AINI_E2E_FIGURES", "/tmp/aini-e2e-figures.json"))


def _world(what: str, build):
    return build_or_fail("e2e", what, build)


@pytest.fixture(scope="session")
def e2e_docker() -> str:
    docker = _world("docker engine", ensure_engine)
    foreign = foreign_resources(docker)
    if foreign:
        pytest.fail(f"e2e world unavailable: another AINI stack is on this engine ({', '.join(foreign)}); "
                    "the e2e stack uses the same names and will not touch it. Remove it first.", pytrace=False)
    return docker


@pytest.fixture(scope="session")
def e2e_images(e2e_docker) -> dict[str, str]:
    """images.overrides for every container (built on first use, cached by content hash)."""
    start = time.monotonic()
    overrides = _world("stack images build", stack_images.stack_overrides)
    figures = {"images_seconds": round(time.monotonic() - start, 1),
               "images": {k: {"seconds": round(b.seconds, 1), "cached": b.cached}
                          for k, b in stack_images.BUILDS.items()}}
    _merge_figures(figures)
    return overrides


@pytest.fixture(scope="module")
def stack(e2e_docker, e2e_images, tmp_path_factory):
    """The default stack (everything enabled), deployed once per module; removed afterwards
    with its volumes and networks."""
    project_dir = tmp_path_factory.mktemp("aini-e2e-project")
    s = Stack(project_dir, stack_config(e2e_images), free_port(), free_port(), e2e_docker)
    s.teardown()  # leftovers of a killed run (only containers labelled aini.project=e2e)
    try:
        start = time.monotonic()
        result = _world("deploy of the full stack", lambda: s.up())
        s.deploy_seconds = time.monotonic() - start
        _merge_figures({"deploy_full_seconds": round(s.deploy_seconds, 1),
                        "deploy_groups_seconds": {g.group: round(g.seconds, 1) for g in result.groups}})
        yield s
    finally:
        s.teardown()
        left = s.containers()
        assert not left, f"e2e left containers behind: {left}"


def _merge_figures(new: dict) -> None:
    try:
        old = json.loads(FIGURES.read_text())
    except (OSError, ValueError):
        old = {}
    FIGURES.write_text(json.dumps(old | new, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def figures():
    return _merge_figures

