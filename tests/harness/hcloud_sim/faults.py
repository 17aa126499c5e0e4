"""Fault injection for the simulator, configured per test and reproducible (seeded RNG).

Two kinds of rules:

* request rules (``rate_limit``, ``server_error``, ``conflict``, ``drop``, ``delay``,
  ``sequence``) decide, per HTTP request, whether the simulator answers with an injected
  error, closes the connection without an answer, or answers late;
* action rules (``slow_actions``, ``fail_actions``) decide how long a newly created action
  stays ``running`` and whether it ends in ``error``.

Every rule has a *schedule*: ``match`` (which requests/actions), ``after`` (let the first N
matching ones through), ``count`` (fire at most N times, ``None`` = forever), ``every``
(fire on every Nth eligible one) and ``probability`` (drawn from the seeded RNG).

``match`` for request rules is a glob over ``"METHOD /path"`` (path without ``/v1`` and
without the query string), e.g. ``"POST /servers"``, ``"GET /actions/*"``, or a glob over
the path alone (``"/servers*"``) for any method. For action rules ``command`` is a glob
over the action command (``"create_server"``, ``"*"``) and ``resource`` a resource type.

Example::

    faults = Faults(seed=7)
    faults.rate_limit(count=3, match="GET /servers")          # a burst of three 429s
    faults.server_error(503, after=1, count=2)                 # 2nd and 3rd request -> 503
    faults.drop(match="POST /ssh_keys")                        # next POST /ssh_keys: no answer
    faults.slow_actions(2.0, command="create_server")
    faults.fail_actions(command="start_server", code="action_failed")
    faults.sequence("GET /locations", [429, None, 502, "drop"])  # explicit per-request plan
    sim = Simulator(faults=faults).start()
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from typing import Iterable, Union

from .errors import CODE_FOR_STATUS

_METHODS = ("GET ", "POST ", "PUT ", "DELETE ", "PATCH ")


def _match_request(pattern: str | None, method: str, path: str) -> bool:
    if pattern is None:
        return True
    if pattern.upper().startswith(_METHODS):
        m, _, p = pattern.partition(" ")
        return m.upper() == method.upper() and fnmatch.fnmatchcase(path, p.strip())
    return fnmatch.fnmatchcase(path, pattern)


@dataclass
class _Schedule:
    after: int = 0
    count: int | None = 1
    every: int = 1
    probability: float = 1.0
    seen: int = 0
    fired: int = 0

    def _fire(self, rng: random.Random) -> bool:
        self.seen += 1
        if self.count is not None and self.fired >= self.count:
            return False
        if self.seen <= self.after:
            return False
        if (self.seen - self.after - 1) % max(1, self.every):
            return False
        if self.probability < 1.0 and rng.random() >= self.probability:
            return False
        self.fired += 1
        return True

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count


@dataclass
class Decision:
    """What the HTTP layer does with one request."""

    kind: str  # "status" | "drop" | "delay"
    status: int = 0
    code: str = ""
    message: str = ""
    seconds: float = 0.0
    raw: bool = False  # answer with a non-JSON (gateway HTML) body
    processed: bool = False  # drop: handle the request first, then lose the answer

    def describe(self) -> str:
        if self.kind == "status":
            return f"{self.status} {self.code}{' (raw)' if self.raw else ''}"
        if self.kind == "delay":
            return f"delay {self.seconds}s"
        return "drop after processing" if self.processed else self.kind


@dataclass
class RequestRule(_Schedule):
    decisions: list[Decision] = field(default_factory=list)  # one is drawn when it fires
    match: str | None = None

    def pick(self, rng: random.Random) -> Decision:
        return self.decisions[0] if len(self.decisions) == 1 else rng.choice(self.decisions)


Outcome = Union[None, int, str, float, Decision]


@dataclass
class SequenceRule:
    """Explicit plan for successive matching requests: each entry is ``None`` (answer
    normally), an HTTP status (injected error), ``"drop"``, or a float (delay seconds)."""

    match: str | None
    plan: list[Outcome]
    seen: int = 0
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.seen >= len(self.plan)


@dataclass
class ActionRule(_Schedule):
    command: str | None = None
    resource: str | None = None
    delay: float | None = None
    error: tuple[str, str] | None = None

    def matches(self, command: str, resource_types: Iterable[str]) -> bool:
        if self.command is not None and not fnmatch.fnmatchcase(command, self.command):
            return False
        if self.resource is not None and self.resource not in set(resource_types):
            return False
        return True


def _status_decision(status: int, code: str | None = None, message: str | None = None,
                     raw: bool = False) -> Decision:
    code = code or CODE_FOR_STATUS.get(status, "server_error" if status >= 500 else "invalid_input")
    default_msg = {
        "rate_limit_exceeded": "limit of 3600 requests per hour reached",
        "conflict": "the resource has changed during the request, please retry",
        "bad_gateway": "bad gateway",
        "unavailable": "service temporarily unavailable",
        "timeout": "gateway timeout",
        "server_error": "internal server error",
    }.get(code, code)
    return Decision("status", status=status, code=code, message=message or default_msg, raw=raw)


class Faults:
    """A per-test fault schedule. Thread-safe; ``seed`` makes random rules reproducible."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self.request_rules: list[RequestRule | SequenceRule] = []
        self.action_rules: list[ActionRule] = []
        self.log: list[tuple[str, str, str]] = []  # (method, path, decision) for fired request faults

    # ----- request rules -------------------------------------------------------------
    def _add(self, decision: Decision | list[Decision], match, after, count, every, probability) -> RequestRule:
        decisions = decision if isinstance(decision, list) else [decision]
        rule = RequestRule(decisions=decisions, match=match, after=after, count=count,
                           every=every, probability=probability)
        with self._lock:
            self.request_rules.append(rule)
        return rule

    def rate_limit(self, count: int | None = 1, *, match: str | None = None, after: int = 0,
                   every: int = 1, probability: float = 1.0) -> RequestRule:
        """429 ``rate_limit_exceeded`` (with ``RateLimit-Remaining: 0``)."""
        return self._add(_status_decision(429), match, after, count, every, probability)

    def server_error(self, status: int = 503, count: int | None = 1, *, match: str | None = None,
                     after: int = 0, every: int = 1, probability: float = 1.0,
                     code: str | None = None, raw: bool = False) -> RequestRule:
        """5xx answer. JSON envelope by default (502 ``bad_gateway``, 503 ``unavailable``,
        504 ``timeout``, 500 ``server_error``); ``raw=True`` answers like a gateway with an
        HTML body (hcloud-python then sees an integer status code)."""
        return self._add(_status_decision(status, code, raw=raw), match, after, count, every,
                         probability)

    def conflict(self, count: int | None = 1, *, match: str | None = None, after: int = 0,
                 every: int = 1, probability: float = 1.0) -> RequestRule:
        """409 ``conflict`` (retried by hcloud-python)."""
        return self._add(_status_decision(409), match, after, count, every, probability)

    def error(self, status: int, code: str, message: str | None = None, count: int | None = 1, *,
              match: str | None = None, after: int = 0, every: int = 1,
              probability: float = 1.0) -> RequestRule:
        """Any injected error envelope."""
        return self._add(_status_decision(status, code, message), match, after, count, every,
                         probability)

    def drop(self, count: int | None = 1, *, match: str | None = None, after: int = 0,
             every: int = 1, probability: float = 1.0, processed: bool = False) -> RequestRule:
        """Close the socket without answering (client sees a connection error). With
        ``processed=True`` the request takes effect first and only the answer is lost (a
        retried create then meets ``uniqueness_error``)."""
        return self._add(Decision("drop", processed=processed), match, after, count, every, probability)

    def delay(self, seconds: float, count: int | None = 1, *, match: str | None = None,
              after: int = 0, every: int = 1, probability: float = 1.0) -> RequestRule:
        """Answer normally, but only after ``seconds`` (for client timeouts)."""
        return self._add(Decision("delay", seconds=seconds), match, after, count, every,
                         probability)

    def random_errors(self, probability: float, statuses: Iterable[int | str] = (429, 502, 503, 504),
                      *, match: str | None = None, count: int | None = None) -> RequestRule:
        """Seeded random faults: each matching request fails with ``probability``; the
        failure is drawn uniformly from ``statuses`` (HTTP statuses or ``"drop"``)."""
        decisions = [Decision("drop") if st == "drop" else _status_decision(int(st)) for st in statuses]
        return self._add(decisions, match, 0, count, 1, probability)

    def sequence(self, match: str | None, plan: list[Outcome]) -> SequenceRule:
        rule = SequenceRule(match=match, plan=list(plan))
        with self._lock:
            self.request_rules.append(rule)
        return rule

    # ----- action rules --------------------------------------------------------------
    def slow_actions(self, seconds: float, *, command: str | None = None, resource: str | None = None,
                     count: int | None = None, after: int = 0, every: int = 1,
                     probability: float = 1.0) -> ActionRule:
        """Matching actions stay ``running`` for ``seconds``."""
        rule = ActionRule(command=command, resource=resource, delay=seconds, after=after,
                          count=count, every=every, probability=probability)
        with self._lock:
            self.action_rules.append(rule)
        return rule

    def fail_actions(self, *, command: str | None = None, resource: str | None = None,
                     code: str = "action_failed", message: str = "Action failed",
                     count: int | None = 1, after: int = 0, every: int = 1,
                     probability: float = 1.0) -> ActionRule:
        """Matching actions end in ``error`` (their side effects are not applied)."""
        rule = ActionRule(command=command, resource=resource, error=(code, message), after=after,
                          count=count, every=every, probability=probability)
        with self._lock:
            self.action_rules.append(rule)
        return rule

    # ----- evaluation (called by the simulator) -------------------------------------
    def clear(self) -> None:
        with self._lock:
            self.request_rules.clear()
            self.action_rules.clear()

    def decide(self, method: str, path: str) -> Decision | None:
        with self._lock:
            for rule in self.request_rules:
                if not _match_request(rule.match, method, path):
                    continue
                if isinstance(rule, SequenceRule):
                    if rule.exhausted:
                        continue
                    outcome = rule.plan[rule.seen]
                    rule.seen += 1
                    decision = _outcome_decision(outcome)
                    if decision is None:
                        return None
                    rule.fired += 1
                elif rule._fire(self.rng):
                    decision = rule.pick(self.rng)
                else:
                    continue
                self.log.append((method, path, decision.describe()))
                return decision
        return None

    def plan_action(self, command: str, resource_types: Iterable[str]) -> tuple[float | None, tuple[str, str] | None]:
        delay: float | None = None
        error = None
        types = list(resource_types)
        with self._lock:
            for rule in self.action_rules:
                if rule.matches(command, types) and rule._fire(self.rng):
                    if rule.delay is not None:
                        delay = rule.delay if delay is None else max(delay, rule.delay)
                    if rule.error is not None and error is None:
                        error = rule.error
        return delay, error


def _outcome_decision(outcome: Outcome) -> Decision | None:
    if outcome is None:
        return None
    if isinstance(outcome, Decision):
        return outcome
    if outcome == "drop":
        return Decision("drop")
    if isinstance(outcome, float):
        return Decision("delay", seconds=outcome)
    if isinstance(outcome, int):
        return _status_decision(outcome)
    raise ValueError(f"unknown outcome {outcome!r}")


__all__ = ["Faults", "Decision", "RequestRule", "SequenceRule", "ActionRule"]
