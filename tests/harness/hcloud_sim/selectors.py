"""Label validation and label selectors as the Hetzner Cloud API understands them.

Selector grammar (expressions joined by ``,`` = AND; commas inside ``( )`` belong to a set):

    k=v   k==v   k!=v   k   !k   k in (a,b)   k notin (a,b)

``parse()`` raises ``ValueError`` on a malformed selector; the API layer turns it into
``invalid_input``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
KEY_RE = re.compile(rf"^(?:(?P<prefix>{_PREFIX})/)?(?P<name>{_NAME})$")
VALUE_RE = re.compile(rf"^(?:{_NAME})?$")


def label_errors(labels: object) -> list[str]:
    """Messages for invalid labels (empty list when valid)."""
    if not isinstance(labels, Mapping):
        return ["labels must be an object"]
    errs = []
    for key, value in labels.items():
        if not isinstance(key, str) or not KEY_RE.match(key) or len(key) > 317:
            errs.append(f"label key {key!r} is invalid")
        elif (m := KEY_RE.match(key)) and m.group("prefix") and len(m.group("prefix")) > 253:
            errs.append(f"label key {key!r} has a too long prefix")
        elif key.startswith("hetzner.cloud/"):
            errs.append(f"label key prefix 'hetzner.cloud/' is reserved ({key!r})")
        if not isinstance(value, str) or not VALUE_RE.match(value):
            errs.append(f"label value {value!r} of key {key!r} is invalid")
    return errs


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "exists", "!exists", "in", "notin"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        val = labels.get(self.key)
        if self.op == "=":
            return has and val == self.values[0]
        if self.op == "!=":
            return not has or val != self.values[0]
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        if self.op == "in":
            return has and val in self.values
        if self.op == "notin":
            return not has or val not in self.values
        raise AssertionError(self.op)


def _split_top(selector: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ')'")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError("unbalanced '('")
    parts.append("".join(cur))
    return [p.strip() for p in parts]


_SET_RE = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<vals>[^()]*)\)$")
_EQ_RE = re.compile(r"^(?P<key>[^=!\s]+)\s*(?P<op>==|=|!=)\s*(?P<val>[^=!\s]*)$")


def _check_key(key: str) -> str:
    if not KEY_RE.match(key):
        raise ValueError(f"invalid label key {key!r} in selector")
    return key


def _check_value(val: str) -> str:
    if not VALUE_RE.match(val):
        raise ValueError(f"invalid label value {val!r} in selector")
    return val


def parse(selector: str) -> list[Requirement]:
    if selector is None or not selector.strip():
        raise ValueError("empty label selector")
    reqs = []
    for expr in _split_top(selector):
        if not expr:
            raise ValueError("empty expression in label selector")
        if m := _SET_RE.match(expr):
            vals = tuple(_check_value(v.strip()) for v in m.group("vals").split(","))
            if any(v == "" for v in vals) and len(vals) > 1:
                raise ValueError(f"empty value in set of {expr!r}")
            reqs.append(Requirement(_check_key(m.group("key")), m.group("op"), vals))
        elif m := _EQ_RE.match(expr):
            op = "=" if m.group("op") in ("=", "==") else "!="
            reqs.append(Requirement(_check_key(m.group("key")), op, (_check_value(m.group("val")),)))
        elif expr.startswith("!"):
            reqs.append(Requirement(_check_key(expr[1:].strip()), "!exists"))
        else:
            reqs.append(Requirement(_check_key(expr), "exists"))
    return reqs


def compile_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    reqs = parse(selector)
    return lambda labels: all(r.matches(labels or {}) for r in reqs)


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    return compile_selector(selector)(labels)
