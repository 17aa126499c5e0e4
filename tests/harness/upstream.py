"""Whether the upstream registries can be reached from this machine (the `upstream` tests
run only where they can; everywhere else they skip, say why, and are never counted as
passing)."""
from __future__ import annotations

import socket
import threading

REGISTRY = ("registry-1.docker.io", 443)
PROBE_SECONDS = 4.0


def registry_unreachable(timeout: float = PROBE_SECONDS) -> str | None:
    """None when Docker Hub accepts a TCP connection; otherwise why not. The probe runs in a
    thread with a bound, so a hanging DNS lookup cannot stretch it; it needs no Docker."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection(REGISTRY, timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"
