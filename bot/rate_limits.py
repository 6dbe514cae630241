"""Per-client rate limits for what anyone can send: questions, ratings, handoff requests.

A sliding window of one minute per (kind, client) in this process: each replica counts its own, so
behind N replicas a client gets up to N times the limit (a proxy in front can enforce a global one).
Measured before: 300 handoff requests from one script in seconds, each with a transcript, each
paging a person.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

WINDOW_S = 60.0
_SWEEP_EVERY = 1000  # checks between sweeps of clients that went quiet (bounds the memory)


class RateLimited(Exception):
    def __init__(self, kind: str, per_minute: int, retry_after_s: int) -> None:
        super().__init__(f"too many {kind} requests from this client (at most {per_minute} a minute); "
                         f"retry in {retry_after_s} s")
        self.kind = kind
        self.retry_after_s = retry_after_s


class RateLimiter:
    """``check(kind, client)`` records one request, or raises :class:`RateLimited` (recording nothing)."""

    def __init__(self, per_minute: Mapping[str, int], clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = dict(per_minute)  # 0 or missing: no limit for that kind
        self._clock = clock
        self._seen: dict[tuple[str, str], deque[float]] = {}
        self._checks = 0
        self._lock = threading.Lock()

    def check(self, kind: str, client: str) -> None:
        limit = self.per_minute.get(kind, 0)
        if limit <= 0:
            return
        now = self._clock()
        with self._lock:
            self._checks += 1
            if self._checks % _SWEEP_EVERY == 0:
                self._sweep(now)
            times = self._seen.setdefault((kind, client), deque())
            while times and times[0] <= now - WINDOW_S:
                times.popleft()
            if len(times) >= limit:
                raise RateLimited(kind, limit, max(1, math.ceil(times[0] + WINDOW_S - now)))
            times.append(now)

    def _sweep(self, now: float) -> None:
        for key in [k for k, times in self._seen.items() if not times or times[-1] <= now - WINDOW_S]:
            del self._seen[key]
