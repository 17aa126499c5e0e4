"""The request object handlers get, body validation and list responses (filters, sort,
pagination)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import selectors
from .errors import ApiError, invalid_input

MAX_PER_PAGE = 50
DEFAULT_PER_PAGE = 25


@dataclass
class Request:
    method: str
    path: str  # without the /v1 prefix and without the query string
    query: dict[str, list[str]] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def q(self, name: str, default: str | None = None) -> str | None:
        vals = self.query.get(name)
        return vals[-1] if vals else default

    def qlist(self, name: str) -> list[str]:
        """All values of a repeated query parameter (``status=a&status=b``); for the enum-like
        parameters ``status``, ``sort`` and ``type`` a comma-separated value is split too."""
        out: list[str] = []
        for v in self.query.get(name, []):
            if name in ("status", "sort", "type"):
                out.extend(x for x in v.split(",") if x)
            else:
                out.append(v)
        return out

    def qint(self, name: str, default: int) -> int:
        v = self.q(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise invalid_input({name: f"{name} must be an integer"}) from None

    def qbool(self, name: str) -> bool | None:
        v = self.q(name)
        if v is None:
            return None
        return v.lower() in ("1", "true", "yes")


class Body:
    """Collects field errors and raises one ``invalid_input`` with ``details.fields``.

    ::

        b = Body(req.body)
        name = b.str("name", required=True)
        b.done()
    """

    _MISSING = object()

    def __init__(self, data: Any):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ApiError("invalid_input", "request body must be a JSON object",
                           {"fields": []})
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, required: bool, types: tuple[type, ...], tname: str,
             nullable: bool = False) -> Any:
        if name not in self.data:
            if required:
                self.fail(name, "Missing data for required field.")
            return None
        value = self.data[name]
        if value is None:
            if not nullable:
                self.fail(name, "Field may not be null.")
            return None
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            self.fail(name, f"Not a valid {tname}.")
            return None
        return value

    def str(self, name: str, required: bool = False, nullable: bool = False,
            choices: Iterable[str] | None = None, max_len: int | None = None) -> Any:
        v = self._get(name, required, (str,), "string", nullable)
        if v is not None and choices is not None and v not in choices:
            self.fail(name, f"Must be one of: {', '.join(choices)}.")
            return None
        if v is not None and max_len is not None and len(v) > max_len:
            self.fail(name, f"Longer than maximum length {max_len}.")
            return None
        return v

    def int(self, name: str, required: bool = False, nullable: bool = False,
            minimum: int | None = None, maximum: int | None = None) -> Any:
        v = self._get(name, required, (int,), "integer", nullable)
        if v is not None and ((minimum is not None and v < minimum) or (maximum is not None and v > maximum)):
            self.fail(name, f"Must be between {minimum} and {maximum}.")
            return None
        return v

    def number(self, name: str, required: bool = False) -> Any:
        return self._get(name, required, (int, float), "number")

    def bool(self, name: str, required: bool = False, default: bool | None = None) -> Any:
        v = self._get(name, required, (bool,), "boolean")
        return default if v is None else v

    def list(self, name: str, required: bool = False) -> Any:
        return self._get(name, required, (list,), "list")

    def dict(self, name: str, required: bool = False, nullable: bool = False) -> Any:
        return self._get(name, required, (dict,), "object", nullable)

    def id_or_name(self, name: str, required: bool = False) -> Any:
        return self._get(name, required, (str, int), "ID or name")

    def labels(self, name: str = "labels") -> dict[str, str] | None:
        v = self._get(name, False, (dict,), "object")
        if v is None:
            return None
        errs = selectors.label_errors(v)
        for e in errs:
            self.fail(name, e)
        return None if errs else dict(v)

    def done(self) -> None:
        if self.errors:
            raise invalid_input(self.errors)


def cidr_ok(value: Any) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
        return isinstance(value, str) and "/" in value
    except (ValueError, TypeError):
        return False


# ----- listing -------------------------------------------------------------------------------

def _sort_key(field_name: str) -> Callable[[dict], Any]:
    return lambda rec: (rec.get(field_name) is None, rec.get(field_name))


def apply_sort(req: Request, items: list[dict], allowed: Iterable[str] = ("id", "name", "created")) -> list[dict]:
    allowed = set(allowed)
    for spec in reversed(req.qlist("sort")):
        fname, _, direction = spec.partition(":")
        if fname not in allowed or direction not in ("", "asc", "desc"):
            raise invalid_input({"sort": f"invalid sort value {spec!r}"})
        items = sorted(items, key=_sort_key(fname), reverse=direction == "desc")
    return items


def apply_common_filters(req: Request, items: Iterable[dict], *, name: bool = True,
                         label_selector: bool = True) -> list[dict]:
    out = list(items)
    if name and req.q("name") is not None:
        out = [r for r in out if r.get("name") == req.q("name")]
    if label_selector and req.q("label_selector") is not None:
        try:
            match = selectors.compile_selector(req.q("label_selector"))
        except ValueError as exc:
            raise invalid_input({"label_selector": str(exc)}, message=f"invalid label_selector: {exc}") from None
        out = [r for r in out if match(r.get("labels") or {})]
    return out


def paginate(req: Request, key: str, items: list[Any], extra: dict | None = None) -> dict[str, Any]:
    page = req.qint("page", 1)
    per_page = req.qint("per_page", DEFAULT_PER_PAGE)
    if page < 1:
        raise invalid_input({"page": "page must be >= 1"})
    if per_page < 1:
        raise invalid_input({"per_page": "per_page must be >= 1"})
    per_page = min(per_page, MAX_PER_PAGE)
    total = len(items)
    last = max(1, -(-total // per_page))
    start = (page - 1) * per_page
    body = {
        key: items[start:start + per_page],
        "meta": {"pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None,
            "last_page": last,
            "total_entries": total,
        }},
    }
    if extra:
        body.update(extra)
    return body


def list_response(req: Request, key: str, records: Iterable[dict], render: Callable[[dict], dict], *,
                  name: bool = True, label_selector: bool = True,
                  sort: Iterable[str] = ("id", "name", "created"),
                  extra_filter: Callable[[list[dict]], list[dict]] | None = None,
                  extra: dict | None = None) -> dict[str, Any]:
    items = sorted(records, key=lambda r: r["id"]) if records else []
    items = apply_common_filters(req, items, name=name, label_selector=label_selector)
    if extra_filter:
        items = extra_filter(items)
    rendered = [render(r) for r in items]
    rendered = apply_sort(req, rendered, sort)
    return paginate(req, key, rendered, extra)
