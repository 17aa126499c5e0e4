"""The one rule every test world follows: a world that cannot be built is a failure, never
a skip (a skipped suite looks green while proving nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def build_or_fail(world: str, what: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - any failure here means the world is missing
        error = e
    # Outside the except block, so the report is this message, not a chained traceback.
    pytest.fail(f"{world} world unavailable: {what}: {error}", pytrace=False)
