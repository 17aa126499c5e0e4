"""``GET /actions?id=..`` and ``GET /actions/{id}``."""

from __future__ import annotations

from ..errors import invalid_input, not_found
from ..request import Request
from ..state import State
from .common import Registry, action_body

route = Registry()


@route("GET", "/actions")
def list_actions(state: State, req: Request):
    ids = req.query.get("id")
    if not ids:
        raise invalid_input({"id": "at least one action id is required"})
    try:
        wanted = [int(i) for i in ids]
    except ValueError:
        raise invalid_input({"id": "action ids must be integers"}) from None
    actions = [state.actions[i] for i in sorted(set(wanted)) if i in state.actions]
    return 200, {"actions": [state.render_action(a) for a in actions]}


@route("GET", "/actions/{id:int}")
def get_action(state: State, req: Request, id: int):
    action = state.actions.get(id)
    if action is None:
        raise not_found("action", id)
    return 200, action_body(state, action)
