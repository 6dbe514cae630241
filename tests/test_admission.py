"""Admission control and the health check under load, over real HTTP against the real service.

A "slow answer in flight" is made deterministic by holding the real model's lock (bot/llm.py): the
request gets its slot, stores its question, and waits for the model exactly as it does behind
another customer's answer. The lock serialises generations only with batching off (continuous
batching never takes it), so these services run with ``batching="off"``; with batching on, the
answer in flight would finish whenever the model does, and on a fast machine before the refusal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from prometheus_client import REGISTRY

from bot.admission import AnswerSlots
from bot.api import create_app
from bot.background_server import live_server
from bot.health import DatabaseProbe
from bot.service import SupportService
from supportbot.settings import Settings
from tests.test_api import sse_events

SAMPLE_KB = Path(__file__).resolve().parents[1] / "bot" / "sample_kb"
QUESTION = "What does a solid amber light mean?"  # on topic: answered by the model, not handed off


# --- the gate itself -------------------------------------------------------------------------


def test_slots_bound_release_once_and_free_on_every_exit() -> None:
    slots = AnswerSlots(2)
    first, second = slots.try_acquire(), slots.try_acquire()
    assert first and second and slots.try_acquire() is None and slots.in_flight == 2
    first.release()
    first.release()  # idempotent: a second release must not free someone else's slot
    assert slots.in_flight == 1

    def answer() -> Iterator[str]:
        yield "a"
        raise RuntimeError("model failed")

    third = slots.try_acquire()
    assert third is not None and slots.try_acquire() is None
    held = third.hold(answer())
    assert next(held) == "a"
    with pytest.raises(RuntimeError):
        next(held)
    assert third.released and slots.in_flight == 1  # an error frees the slot

    fourth = slots.try_acquire()
    assert fourth is not None
    fourth.hold(iter(["never read"])).close()  # closed before its first item: still freed
    assert slots.in_flight == 1
    second.release()
    assert slots.in_flight == 0
    with pytest.raises(ValueError, match="at least 1"):
        AnswerSlots(0)


def test_the_bound_and_retry_after_follow_measured_throughput() -> None:
    now = [0.0]
    slots = AnswerSlots(2, max_wait_s=10, window_s=30, ceiling=100, clock=lambda: now[0])
    assert slots.limit == 2 and slots.retry_after_s(15) == 15  # nothing measured: the configured values
    for _ in range(60):  # 60 answers in 30 s: 2 answers/s
        slot = slots.try_acquire()
        assert slot is not None
        now[0] += 0.5
        slot.release()
    assert slots.throughput() == pytest.approx(2.0, rel=0.05)
    assert slots.limit == 20  # what 2 answers/s finish in 10 s
    held = [slots.try_acquire() for _ in range(20)]
    assert all(held) and slots.try_acquire() is None
    assert slots.retry_after_s(15) == 10  # 20 in flight at 2/s
    for slot in held:
        slot.release()
    now[0] += 31  # the window empties: back to the configured bound and Retry-After
    assert slots.limit == 2 and slots.retry_after_s(15) == 15
    assert AnswerSlots(2, max_wait_s=0).limit == 2  # 0 = a fixed bound


# --- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
def app_and_service(database_url, db, ingestor):
    ingestor.ingest_paths([SAMPLE_KB])
    service = SupportService(Settings(database_url=database_url, max_queued_answers=1, retry_after_s=7,
                                        batching="off"), db=db)
    return create_app(service, mount_chat=False), service


@pytest.fixture
def server(app_and_service):
    app, service = app_and_service
    with live_server(app) as url:
        yield url, service


@pytest.fixture
def model_lock(server):
    """The real model's lock: held, every admitted answer waits for the model."""
    _, service = server
    lock = service.adapters.for_chat(None, None)[1]._lock
    lock.acquire()
    yield lock
    if lock.locked():
        lock.release()


def _roles(service: SupportService, conversation_id: str) -> list[str]:
    with service.db.connection() as conn:
        return [r["role"] for r in conn.execute(
            "SELECT role FROM messages WHERE conversation_id = %s ORDER BY created_at", (conversation_id,))]


def _wait(condition: Any, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _totals(service: SupportService) -> dict[str, int]:
    """Conversations and messages in the database (ids are the server's: a test cannot pick one)."""
    with service.db.connection() as conn:
        return conn.execute(
            """SELECT (SELECT count(*) FROM conversations) AS conversations,
                      count(*) FILTER (WHERE role = 'user') AS questions,
                      count(*) FILTER (WHERE role = 'assistant') AS answers FROM messages""").fetchone()


def _plus(totals: dict[str, int], conversations: int, questions: int, answers: int) -> dict[str, int]:
    return {"conversations": totals["conversations"] + conversations, "questions": totals["questions"] + questions,
            "answers": totals["answers"] + answers}


def _sse_events(url: str) -> list[tuple[str, dict]]:
    with httpx.stream("POST", f"{url}/api/chat", timeout=300,
                      json={"message": QUESTION, "stream": True}) as response:
        assert response.status_code == 200
        return sse_events(response)


def _refused(channel: str) -> float:
    return REGISTRY.get_sample_value("supportbot_answers_refused_total", {"channel": channel}) or 0.0


def _in_flight_gauge(url: str) -> float:
    line = next(x for x in httpx.get(f"{url}/metrics").text.splitlines()
                if x.startswith("supportbot_answers_in_flight "))
    return float(line.split()[1])


def _admitted_and_waiting(service: SupportService, before: dict[str, int]) -> bool:
    """One answer in flight, its question stored, no answer yet."""
    return service.answer_slots.in_flight == 1 and _totals(service) == _plus(before, 1, 1, 0)


def test_a_question_beyond_the_limit_is_refused_at_once_and_not_stored(server, model_lock) -> None:
    url, service = server
    before = _totals(service)
    refused_before = _refused("api"), _refused("openai")
    with ThreadPoolExecutor(1) as pool:
        in_flight: Future = pool.submit(_sse_events, url)
        _wait(lambda: _admitted_and_waiting(service, before), what="the first answer to wait for the model")
        assert _in_flight_gauge(url) == 1

        started = time.perf_counter()
        chat = httpx.post(f"{url}/api/chat", json={"message": QUESTION}, timeout=10)
        openai = httpx.post(f"{url}/v1/chat/completions", timeout=10,
                            json={"model": "supportbot", "stream": True,
                                  "messages": [{"role": "user", "content": QUESTION}]})
        elapsed = time.perf_counter() - started
        assert chat.status_code == 503 and chat.headers["retry-after"] == "7"
        assert "retry in 7 s" in chat.json()["detail"] and chat.json()["retry_after_s"] == 7
        assert openai.status_code == 503 and openai.headers["retry-after"] == "7"
        assert openai.json()["error"]["type"] == "server_overloaded" and openai.json()["error"]["message"]
        assert elapsed < 2, f"refusals took {elapsed:.1f} s: they must not queue"
        # Nothing half-stored: neither the conversation nor the question of a refused request.
        assert _totals(service) == _plus(before, 1, 1, 0)
        assert (_refused("api"), _refused("openai")) == (refused_before[0] + 1, refused_before[1] + 1)
        assert not in_flight.done()  # the first customer is still waiting for the model

        model_lock.release()
        events = in_flight.result(timeout=300)
    assert events[-1][0] == "answer"
    assert _roles(service, events[-1][1]["conversation_id"]) == ["user", "assistant"]
    _wait(lambda: service.answer_slots.in_flight == 0, 10, "the finished stream's slot")

    after = httpx.post(f"{url}/api/chat", json={"message": QUESTION}, timeout=300)  # the slot is free again
    assert after.status_code == 200 and after.json()["message_id"]
    assert service.answer_slots.in_flight == 0 and _in_flight_gauge(url) == 0  # non-streaming frees it too


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server) -> None:
    url, service = server
    before = _totals(service)
    with httpx.Client(timeout=300) as client, client.stream(
        "POST", f"{url}/api/chat", json={"message": QUESTION, "stream": True}
    ) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("event: token"))
        assert service.answer_slots.in_flight == 1
    # The connection is closed with the answer half generated.
    _wait(lambda: service.answer_slots.in_flight == 0, 10, "the disconnected stream's slot")
    # Freed because the generation was stopped, not because it finished: no answer was stored.
    assert _totals(service) == _plus(before, 1, 1, 0)
    again = httpx.post(f"{url}/v1/chat/completions", timeout=300,
                       json={"model": "supportbot", "messages": [{"role": "user", "content": QUESTION}]})
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"]
    assert service.answer_slots.in_flight == 0


# --- /healthz --------------------------------------------------------------------------------


def test_healthz_and_refusals_answer_at_once_while_every_worker_thread_is_busy(app_and_service) -> None:
    app, service = app_and_service
    release, entered = threading.Event(), threading.Semaphore(0)

    @app.get("/test/block")
    def block() -> dict[str, bool]:  # a plain endpoint: it holds a worker thread until released
        entered.release()
        return {"released": release.wait(60)}

    @app.post("/test/pool-size")
    async def pool_size(tokens: int) -> dict[str, int]:  # the loop's worker pool (AnyIO's, 40 by default)
        anyio.to_thread.current_default_thread_limiter().total_tokens = tokens
        return {"tokens": tokens}

    model = service.adapters.for_chat(None, None)[1]
    with live_server(app) as url, ThreadPoolExecutor(4) as pool:
        assert httpx.post(f"{url}/test/pool-size", params={"tokens": 3}).status_code == 200
        model._lock.acquire()
        try:
            before = _totals(service)
            answer = pool.submit(_sse_events, url)  # a worker thread waiting for the model
            _wait(lambda: _admitted_and_waiting(service, before), what="the answer to wait for the model")
            blocked = [pool.submit(httpx.get, f"{url}/test/block", timeout=60) for _ in range(2)]
            for _ in blocked:
                assert entered.acquire(timeout=30)
            # The pool is saturated: a plain endpoint cannot even start.
            with pytest.raises(httpx.ReadTimeout):
                httpx.get(f"{url}/v1/models", timeout=1)

            started = time.perf_counter()
            health = httpx.get(f"{url}/healthz", timeout=5)
            health_s = time.perf_counter() - started
            refused = httpx.post(f"{url}/api/chat", json={"message": QUESTION}, timeout=5)
            refused_s = time.perf_counter() - started - health_s
        finally:
            release.set()
            model._lock.release()
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health_s < 1, f"/healthz took {health_s:.2f} s with the worker pool saturated"
        assert refused.status_code == 503 and refused_s < 1, f"the refusal took {refused_s:.2f} s"
        assert all(b.result(timeout=30).json() == {"released": True} for b in blocked)
        assert answer.result(timeout=300)[-1][0] == "answer"
        assert httpx.get(f"{url}/v1/models", timeout=5).status_code == 200


class _StuckDatabase:
    """A database that never answers (a dead host behind a firewall), or fails at once."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def connection(self) -> Any:
        if self.fail:
            raise OSError("connection refused")
        time.sleep(3)
        raise AssertionError("the probe should have given up before this")


def test_healthz_is_503_when_the_database_does_not_answer_in_time(app_and_service) -> None:
    app, _ = app_and_service
    with live_server(app) as url:
        app.state.db_probe = DatabaseProbe(_StuckDatabase(), timeout_s=0.3)  # type: ignore[arg-type]
        started = time.perf_counter()
        stuck = httpx.get(f"{url}/healthz", timeout=5)
        elapsed = time.perf_counter() - started
        app.state.db_probe = DatabaseProbe(_StuckDatabase(fail=True))  # type: ignore[arg-type]
        failed = httpx.get(f"{url}/healthz", timeout=5)
    assert stuck.status_code == 503 and elapsed < 1.5
    assert stuck.json()["detail"] == "the database did not answer within 0.3 s"
    assert failed.status_code == 503 and "OSError: connection refused" in failed.json()["detail"]
