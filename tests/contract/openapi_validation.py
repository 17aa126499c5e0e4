"""Validate the simulator's answers against the Hetzner Cloud OpenAPI description.

Spec quirks handled in memory (the file on disk is not touched):

* response keys ``4xx``/``5xx`` are upper-cased to ``4XX``/``5XX`` (the standard's spelling;
  strict validators reject the lower-case form);
* every path carries ``servers: [https://api.hetzner.cloud/v1]``, so requests are matched
  by path: the validator presents each exchange as a request to that host;
* 14 schemas say ``{"allOf": [X], "nullable": true}`` (no ``type``) for values that are
  ``null`` in real answers (``server.image``, ``action.error``, ``deprecation``...). OAS 3.0.3
  says ``nullable`` only counts next to a ``type`` in the same schema object, so
  openapi-schema-validator rejects ``null`` there. They are rewritten to
  ``{"anyOf": [{"allOf": [X]}, {"type": "object", "nullable": true, "enum": [null]}]}``,
  which keeps X strict and admits ``null``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

# Kept in the repository beside the simulator (MIT, licence file alongside) so that a clone runs alone.
SPEC_PATH = Path(os.environ.get("HCLOUD_OPENAPI_SPEC",
                                Path(__file__).resolve().parents[1] / "harness" / "hcloud_sim" / "hcloud-openapi.json"))
API_HOST = "https://api.hetzner.cloud"


def _nullable_all_of(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("nullable") is True and "type" not in node and "allOf" in node:
            rest = {k: v for k, v in node.items() if k not in ("allOf", "nullable")}
            any_of = [{"allOf": node["allOf"]}, {"type": "object", "nullable": True, "enum": [None]}]
            node.clear()
            node.update(rest, anyOf=any_of)
        for value in node.values():
            _nullable_all_of(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_all_of(value)


def _fix_spec(spec: dict[str, Any]) -> dict[str, Any]:
    _nullable_all_of(spec)
    for item in spec["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and "responses" in op:
                op["responses"] = {k.upper() if k in ("4xx", "5xx") else k: v for k, v in op["responses"].items()}
    return spec


@functools.lru_cache(maxsize=None)
def load_openapi(path: Path = SPEC_PATH) -> OpenAPI:
    with open(path, encoding="utf-8") as fh:
        return OpenAPI.from_dict(_fix_spec(json.load(fh)))


def describe(exc: BaseException) -> str:
    """Flatten openapi-core's exception chain into readable lines."""
    text = str(exc)
    parts = [f"{type(exc).__name__}: {text[:300]}{' ...' if len(text) > 300 else ''}"]
    seen = {id(exc)}
    cur: BaseException | None = exc
    while cur is not None:
        for err in getattr(cur, "schema_errors", None) or []:
            where = "/".join(str(p) for p in err.absolute_path) or "<root>"
            parts.append(f"  at {where}: {err.message}")
        cur = cur.__cause__ or cur.__context__
        if cur is not None and id(cur) not in seen:
            seen.add(id(cur))
            if not getattr(cur, "schema_errors", None):
                parts.append(f"  caused by {type(cur).__name__}: {cur}")
    return "\n".join(parts)


class ResponseValidator:
    """An observer for :attr:`Simulator.observers`; collects validation failures."""

    def __init__(self, openapi: OpenAPI | None = None):
        self.openapi = openapi or load_openapi()
        self.failures: list[str] = []
        self.checked = 0
        self.skipped = 0

    def __call__(self, exchange) -> None:
        if exchange.status is None:  # dropped connection: nothing to validate
            self.skipped += 1
            return
        content_type = exchange.response_headers.get("Content-Type", "application/json")
        if exchange.fault and "json" not in content_type:
            # an injected gateway page (Faults.server_error(raw=True)): not an API answer
            self.skipped += 1
            return
        request = MockRequest(API_HOST, exchange.method, exchange.path, args=exchange.query,
                              headers=exchange.request_headers)
        response = MockResponse(exchange.response_body, status_code=exchange.status,
                                headers=exchange.response_headers, content_type=content_type)
        self.checked += 1
        try:
            self.openapi.validate_response(request, response)
        except Exception as exc:  # noqa: BLE001 - every validation problem is a finding
            query = "&".join(f"{k}={v}" for k, vs in exchange.query.items() for v in vs)
            body = exchange.response_body[:300].decode(errors="replace")
            self.failures.append(f"{exchange.method} {exchange.path}{'?' + query if query else ''} "
                                 f"-> {exchange.status}\n{describe(exc)}\n  body: {body}")
