"""Route registry and helpers shared by the resource modules.

A handler is ``fn(state, req, **path_params) -> (status, body_or_None)``; it runs with the
state lock held, after ``state.tick()``. It raises :class:`ApiError` for API errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import not_found
from ..request import Request, apply_sort, paginate
from ..state import Action, State

Handler = Callable[..., tuple[int, Any]]


@dataclass
class Route:
    method: str
    pattern: str
    handler: Handler

    def __post_init__(self) -> None:
        regex, self.converters = "", {}
        for seg in self.pattern.strip("/").split("/"):
            if m := re.fullmatch(r"\{(\w+)(?::(\w+))?\}", seg):
                name, conv = m.group(1), m.group(2) or "str"
                self.converters[name] = int if conv == "int" else str
                regex += "/" + (rf"(?P<{name}>\d+)" if conv == "int" else rf"(?P<{name}>[^/]+)")
            else:
                regex += "/" + re.escape(seg)
        self.regex = re.compile("^" + regex + "$")
        # literal segments sort before parameters: /zones/actions wins over /zones/{id}
        self.specificity = tuple(1 if s.startswith("{") else 0 for s in self.pattern.strip("/").split("/"))

    def match(self, path: str) -> dict[str, Any] | None:
        m = self.regex.match(path)
        if not m:
            return None
        return {k: self.converters[k](v) for k, v in m.groupdict().items()}


class Registry:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def __call__(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(method, pattern, fn))
            return fn
        return deco


def action_body(state: State, action: Action, **extra: Any) -> dict[str, Any]:
    return {"action": state.render_action(action), **extra}


def actions_body(state: State, actions: list[Action]) -> dict[str, Any]:
    return {"actions": [state.render_action(a) for a in actions]}


def list_actions(state: State, req: Request, predicate: Callable[[Action], bool]) -> dict[str, Any]:
    actions = sorted((a for a in state.actions.values() if predicate(a)), key=lambda a: a.id)
    statuses = req.qlist("status")
    if statuses:
        actions = [a for a in actions if a.status in statuses]
    ids = req.query.get("id")
    if ids:
        wanted = {int(i) for i in ids if i.isdigit()}
        actions = [a for a in actions if a.id in wanted]
    rendered = apply_sort(req, [state.render_action(a) for a in actions],
                          ("id", "command", "status", "started", "finished"))
    return paginate(req, "actions", rendered)


def register_action_routes(route: Registry, prefix: str, kind: str,
                           lookup: Callable[[State, Any], dict], param: str = "id:int") -> None:
    """GET {prefix}/actions, {prefix}/actions/{id}, {prefix}/{id}/actions[/{action_id}]."""
    pname = param.split(":")[0]

    def of_kind(a: Action) -> bool:
        return any(k == kind for k, _ in a.resources)

    @route("GET", f"{prefix}/actions")
    def _list_all(state: State, req: Request):
        return 200, list_actions(state, req, of_kind)

    @route("GET", f"{prefix}/actions/{{id:int}}")
    def _get_one(state: State, req: Request, id: int):
        action = state.actions.get(id)
        if action is None or not of_kind(action):
            raise not_found("action", id)
        return 200, action_body(state, action)

    @route("GET", f"{prefix}/{{{param}}}/actions")
    def _list_for(state: State, req: Request, **params):
        rec = lookup(state, params[pname])
        return 200, list_actions(state, req, lambda a: a.involves(kind, rec["id"]))

    @route("GET", f"{prefix}/{{{param}}}/actions/{{action_id:int}}")
    def _get_for(state: State, req: Request, action_id: int, **params):
        rec = lookup(state, params[pname])
        action = state.actions.get(action_id)
        if action is None or not action.involves(kind, rec["id"]):
            raise not_found("action", action_id)
        return 200, action_body(state, action)
