"""The health check behind GET /healthz, kept off the server's shared worker pool.

A plain ``def`` endpoint runs on the same pool of worker threads as the answers streaming to
customers; under load it waited for a free thread and load balancers saw a dead replica exactly
when it was busiest. Here the database check runs on a thread of its own limiter, and gives up
after a short timeout (a database that does not answer in time is reported as down).
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread

from supportbot.database import Database

# Seconds the database may take to answer SELECT 1: well under the 2–5 s probe timeouts of load
# balancers, so they get a clear 503 rather than a timeout of their own.
DEFAULT_TIMEOUT_S = 2.0


class DatabaseProbe:
    """Runs ``SELECT 1`` on threads of its own limiter, never waiting for the server's shared pool.

    A probe that times out gives its limiter token back at once; its thread ends when the pool's
    own timeout does (psycopg_pool: 30 s), so a dead database leaves a few threads behind at most.
    """

    def __init__(self, db: Database, timeout_s: float = DEFAULT_TIMEOUT_S, threads: int = 2) -> None:
        self.db = db
        self.timeout_s = timeout_s
        self._limiter = anyio.CapacityLimiter(threads)

    def _select_one(self) -> None:
        with self.db.connection() as conn:
            conn.execute("SELECT 1")

    async def check(self) -> str | None:
        """``None`` when the database answered in time, else why not."""
        try:
            with anyio.fail_after(self.timeout_s):
                # abandon_on_cancel: on timeout, answer now; the thread finishes (or fails) on its own.
                await anyio.to_thread.run_sync(self._select_one, limiter=self._limiter, abandon_on_cancel=True)
        except TimeoutError:
            return f"the database did not answer within {self.timeout_s:g} s"
        except Exception as exc:  # connection refused, pool closed, …: report, do not crash the probe
            return f"the database failed: {type(exc).__name__}: {exc}"
        return None


def health_body(problem: str | None, model: str) -> tuple[int, dict[str, Any]]:
    """(status code, JSON body) of /healthz."""
    if problem:
        return 503, {"status": "unavailable", "detail": problem, "model": model}
    return 200, {"status": "ok", "model": model}
