"""API errors in the Hetzner Cloud envelope: ``{"error": {"code", "message", "details"}}``.

Status codes follow the error table of docs.hetzner.cloud; codes that are specific to one
resource (``firewall_already_applied``, ``server_not_stopped``, ...) use the statuses listed
in ``STATUS``; anything unknown falls back to 400 (4xx) or 500 (5xx).
"""

from __future__ import annotations

from typing import Any

STATUS: dict[str, int] = {
    # general codes (docs.hetzner.cloud, "Errors")
    "invalid_input": 400,
    "json_error": 400,
    "unsupported_error": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "token_readonly": 403,
    "resource_limit_exceeded": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "uniqueness_error": 409,
    "conflict": 409,
    "resource_unavailable": 412,
    "locked": 423,
    "protected": 423,
    "rate_limit_exceeded": 429,
    "server_error": 500,
    "bad_gateway": 502,
    "service_error": 503,
    "unavailable": 503,
    "maintenance": 503,
    "timeout": 504,
    # operation specific codes (tables in the operations' descriptions; 422 where the
    # table gives a status, 422 as a guess where it leaves the status empty)
    "firewall_resource_not_found": 404,
    "firewall_already_applied": 422,
    "firewall_already_removed": 422,
    "firewall_managed_by_label_selector": 422,
    "server_already_added": 422,
    "incompatible_network_type": 422,
    "private_net_only_server": 422,
    "resource_in_use": 422,
    "server_not_stopped": 422,
    "server_has_ipv4": 422,
    "server_has_ipv6": 422,
    "must_be_unassigned": 422,
    "primary_ip_already_assigned": 422,
    "primary_ip_assigned": 422,
    "primary_ip_datacenter_mismatch": 422,
    "primary_ip_version_mismatch": 422,
    "invalid_server_type": 422,
    "server_already_attached": 422,
    "server_not_attached": 422,
    "ip_not_available": 422,
    "no_subnet_available": 422,
    "networks_overlap": 422,
    "incorrect_zone_mode": 422,
    "volume_already_attached": 422,
    "volume_not_attached": 422,
}

# Error code used for an injected HTTP status (hcloud-python retries bad_gateway/timeout).
CODE_FOR_STATUS: dict[int, str] = {
    429: "rate_limit_exceeded",
    409: "conflict",
    500: "server_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """Raised by handlers; the HTTP layer turns it into the error envelope."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None,
                 status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.status = status or STATUS.get(code, 400)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def not_found(kind: str, ident: Any = None) -> ApiError:
    suffix = f" with ID {ident}" if isinstance(ident, int) else (f" {ident!r}" if ident else "")
    return ApiError("not_found", f"{kind}{suffix} not found")


def invalid_input(fields: dict[str, list[str] | str] | None = None, message: str = "invalid input") -> ApiError:
    """``invalid_input`` with ``details.fields = [{"name", "messages"}]``."""
    out = []
    for name, msgs in (fields or {}).items():
        out.append({"name": name, "messages": [msgs] if isinstance(msgs, str) else list(msgs)})
    if out and message == "invalid input":
        message = "invalid input in field" + ("s " if len(out) > 1 else " ") + ", ".join(
            f"'{f['name']}'" for f in out)
    return ApiError("invalid_input", message, {"fields": out})


def uniqueness(field: str = "name", message: str | None = None) -> ApiError:
    return ApiError("uniqueness_error", message or f"{field} is already used",
                    {"fields": [{"name": field}]})


def locked(kind: str, ident: int) -> ApiError:
    return ApiError("locked", f"{kind} {ident} is locked by a running action")
