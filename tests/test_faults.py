"""Faults in production, each with the real parts: the database restarting under a live app, an
ingestion and a training run killed with SIGKILL, and a corrupt adapter at promotion."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from bot.api import create_app
from bot.background_server import live_server
from bot.cli import SAMPLE_KB
from bot.service import SupportService
from ingestion.pipeline import Ingestor
from supportbot.database import open_database
from supportbot.settings import Settings
from tests.restartable_postgres import RestartablePostgres

# --- a. the database restarts mid-conversation -----------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres()
    yield server
    server.close()


def test_after_a_restart_the_pool_replaces_its_dead_connections_at_once(own_postgres: RestartablePostgres) -> None:
    """Checked one by one, four dead connections cost the pool's back-off, 1 + 2 + 4 s, before the
    first query after a restart; without a check at all, the first four queries fail."""
    with open_database(Settings(database_url=own_postgres.url)) as db:
        with db.connection(), db.connection(), db.connection(), db.connection():
            pass
        assert db.pool.get_stats()["pool_available"] == 4
        own_postgres.stop()
        own_postgres.start()
        started = time.perf_counter()
        with db.connection() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        assert time.perf_counter() - started < 1.5
        assert db.pool.get_stats()["connections_lost"] == 4


def sse_lines(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    name = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


def test_a_conversation_goes_on_across_a_database_restart(own_postgres: RestartablePostgres, embedder) -> None:
    """The restart happens while an answer streams; that answer is still stored, and no request after
    it fails. (Requests that arrive while the server is down wait for it, up to the pool's 30 s.)"""
    settings = Settings(database_url=own_postgres.url)
    db = open_database(settings)
    Ingestor(db, embedder, settings).ingest_paths([SAMPLE_KB])
    service = SupportService(settings, db=db)
    questions = ["How do I factory reset the router?", "What does a solid amber light mean?",
                 "How do I turn on the guest network?"]
    try:
        with live_server(create_app(service, mount_chat=False)) as url, httpx.Client(base_url=url, timeout=120) as http:
            first = http.post("/api/chat", json={"message": questions[0]})
            assert first.status_code == 200
            conversation = first.json()["conversation_id"]
            with db.connection(), db.connection(), db.connection():
                pass  # three connections in the pool, as a busy server has: all of them die in the restart
            assert db.pool.get_stats()["pool_size"] >= 3

            body = {"message": questions[1], "conversation_id": conversation, "stream": True}
            with http.stream("POST", "/api/chat", json=body) as response:
                events = sse_lines(response)
                assert next(events)[0] == "token"  # generating: the question is stored, the answer is not yet
                own_postgres.stop()
                own_postgres.start()
                rest = list(events)
            assert rest[-1][0] == "answer" and rest[-1][1]["message_id"]  # stored after the restart

            after = [http.get("/healthz").status_code for _ in range(4)]
            third = http.post("/api/chat", json={"message": questions[2], "conversation_id": conversation})
            assert after == [200] * 4 and third.status_code == 200, third.text
    finally:
        service.close()

    with open_database(settings) as check, check.connection() as conn:
        rows = conn.execute("SELECT role, content FROM messages WHERE conversation_id = %s ORDER BY created_at",
                            (conversation,)).fetchall()
    assert [r["role"] for r in rows] == ["user", "assistant"] * 3
    assert [r["content"] for r in rows[::2]] == questions
