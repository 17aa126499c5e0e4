"""Token bucket behind the ``RateLimit-*`` headers (3600 requests/hour, refilled 1/s)."""

from __future__ import annotations

import math
import threading
import time
from typing import Callable


class RateLimiter:
    def __init__(self, limit: int = 3600, refill_per_second: float = 1.0,
                 clock: Callable[[], float] = time.time):
        self.limit = limit
        self.refill = refill_per_second
        self.clock = clock
        self._tokens = float(limit)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _update(self) -> None:
        now = self.clock()
        self._tokens = min(self.limit, self._tokens + (now - self._stamp) * self.refill)
        self._stamp = now

    def take(self) -> bool:
        """Consume one request; False when the bucket is empty."""
        with self._lock:
            self._update()
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def set_remaining(self, remaining: int) -> None:
        with self._lock:
            self._update()
            self._tokens = float(max(0, min(self.limit, remaining)))

    def headers(self, exhausted: bool = False) -> dict[str, str]:
        with self._lock:
            self._update()
            remaining = 0 if exhausted else int(self._tokens)
            missing = self.limit - self._tokens
            reset = self._stamp + (missing / self.refill if self.refill > 0 else 0)
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(int(math.ceil(reset)))}
