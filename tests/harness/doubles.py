"""The Vault and Consul API TEST DOUBLES as modules, for tests that run them in-process."""
from __future__ import annotations

import importlib
import sys
from types import ModuleType


def import_double(name: str) -> ModuleType:
    before = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ beside the doubles image's recipe
    try:
        return importlib.import_module(f"tests.harness.images.doubles.{name}")
    finally:
        sys.dont_write_bytecode = before
