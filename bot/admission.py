"""Admission control: at most N answers in progress or waiting for the model, per process.

The local model answers one question at a time; every further question waits, and while it waits it
holds a worker thread (and a customer who is likely to give up). Without a bound, 40 waiting
answers took every thread of the server's pool and even /healthz stalled (bench/load_test.py).
With one, a question beyond the bound is refused at once — before anything is stored — and the
client can retry or go elsewhere (another replica, a person).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
from starlette.responses import StreamingResponse

from bot import metrics

T = TypeVar("T")


class AnswerSlots:
    """A non-blocking counting gate: :meth:`try_acquire` gives a slot or ``None`` when all are taken.

    Non-blocking on purpose: waiting here would only move the queue from the model to the gate.
    Thread-safe (the chat UI acquires from its own threads, the API from the event loop).

    The bound follows measured capacity: once enough answers have finished in the last *window_s*
    seconds, it admits as many as that throughput finishes within *max_wait_s* (never fewer than
    *limit*, never more than *ceiling*), and a refused client is told to come back when the answers
    in flight will have finished (:meth:`retry_after_s`), not after a fixed guess. Quoted answers finish in
    milliseconds and a batched model many per second, where a lock finished one every 13 s.
    """

    MIN_SAMPLES = 5  # completions in the window before the measured rate is trusted

    def __init__(self, limit: int, max_wait_s: float = 0.0, window_s: float = 30.0, ceiling: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError(f"the answer limit must be at least 1, not {limit}")
        self.floor = limit
        self.max_wait_s = max_wait_s
        self.window_s = window_s
        self.ceiling = max(ceiling, limit)
        self._clock = clock
        self._finished: deque[float] = deque()  # completion times within the window
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def throughput(self) -> float | None:
        """Answers finished per second over the window; None until there are enough of them."""
        with self._lock:
            self._forget(self._clock())
            if len(self._finished) < self.MIN_SAMPLES:
                return None
            return len(self._finished) / self.window_s

    @property
    def limit(self) -> int:
        rate = self.throughput()
        if rate is None or self.max_wait_s <= 0:
            return self.floor
        return max(self.floor, min(self.ceiling, int(rate * self.max_wait_s)))

    def retry_after_s(self, default: int) -> int:
        """Seconds until the answers in flight should have finished at the measured rate (*default*
        before there is a measurement), at least 1."""
        rate = self.throughput()
        if rate is None:
            return default
        return max(1, math.ceil(self._in_flight / rate))

    def try_acquire(self) -> Slot | None:
        limit = self.limit
        with self._lock:
            if self._in_flight >= limit:
                return None
            self._in_flight += 1
        metrics.ANSWERS_IN_FLIGHT.inc()
        return Slot(self)

    def _forget(self, now: float) -> None:
        while self._finished and self._finished[0] < now - self.window_s:
            self._finished.popleft()

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            now = self._clock()
            self._finished.append(now)
            self._forget(now)
        metrics.ANSWERS_IN_FLIGHT.dec()


class Slot:
    """One admitted answer. :meth:`release` is idempotent, so every exit path may call it."""

    def __init__(self, slots: AnswerSlots) -> None:
        self._slots = slots
        self._released = False
        self._lock = threading.Lock()

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._slots._release()

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def hold(self, events: Iterator[T]) -> HeldEvents[T]:
        """*events*, releasing this slot when they end, fail or are closed."""
        return HeldEvents(self, events)


class HeldEvents(Generic[T]):
    """An iterator that keeps its slot until exhausted, failed or closed.

    A class rather than a generator with ``try/finally``: a generator closed before its first item
    never runs its ``finally``, and the slot would leak.
    """

    def __init__(self, slot: Slot, events: Iterator[T]) -> None:
        self._slot = slot
        self._events = events

    def __iter__(self) -> HeldEvents[T]:
        return self

    def __next__(self) -> T:
        try:
            return next(self._events)
        except BaseException:  # StopIteration included: the answer is complete
            self.close()
            raise

    def close(self) -> None:
        """Stop the events (a model stops generating at its next step) and free the slot."""
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            self._slot.release()


class _Exhausted(Exception):
    """StopIteration cannot cross a thread boundary into a coroutine; this can."""


def _next(events: Iterator[T]) -> T:
    try:
        return next(events)
    except StopIteration:
        raise _Exhausted from None


async def iterate_held(events: HeldEvents[T]) -> AsyncIterator[T]:
    """Iterate blocking *events* in worker threads (as Starlette does for a sync stream), closing them
    — and so freeing their slot — as soon as the stream ends or the client disconnects.

    Starlette alone would leave a disconnected stream's generator to the garbage collector. When
    the client goes, the cancellation waits for the current ``next`` (a worker thread cannot be
    interrupted), then the ``finally`` closes the events.
    """
    try:
        while True:
            try:
                item = await anyio.to_thread.run_sync(_next, events)
            except _Exhausted:
                return
            yield item
    finally:
        with anyio.CancelScope(shield=True):  # closing must finish even though we are being cancelled
            await anyio.to_thread.run_sync(events.close)


class HeldStreamingResponse(StreamingResponse):
    """A streaming response that closes its body when the client goes, whatever the body was doing.

    Starlette cancels a disconnected stream but leaves its async iterator suspended: one waiting at
    ``yield`` (the next piece was ready at once, as a quoted answer's are) would only run its
    ``finally``, and free its slot, when garbage-collected.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()
