"""Per-client rate limits: the window itself (a fake clock), and over real HTTP (real server, real
PostgreSQL): a 429 with Retry-After beyond the limit, OpenAI's error shape on /v1, nothing stored."""

from pathlib import Path

import httpx
import pytest

from bot.api import create_app
from bot.background_server import live_server
from bot.rate_limits import RateLimited, RateLimiter
from bot.service import SupportService
from supportbot.settings import Settings

SAMPLE_KB = Path(__file__).resolve().parents[1] / "bot" / "sample_kb"


def test_a_sliding_minute_per_kind_and_client():
    now = [0.0]
    limits = RateLimiter({"question": 3, "handoff": 0}, clock=lambda: now[0])
    for _ in range(3):
        limits.check("question", "a")
        now[0] += 1
    with pytest.raises(RateLimited) as refused:
        limits.check("question", "a")
    assert refused.value.retry_after_s == 57  # the first of the three leaves the window at 60 s
    limits.check("question", "b")  # another client has its own window
    for _ in range(100):
        limits.check("handoff", "a")  # 0: no limit
    now[0] = 60.5
    limits.check("question", "a")  # the oldest left the window


def test_over_http_a_429_with_retry_after_and_nothing_stored(database_url, db, ingestor):
    ingestor.ingest_paths([SAMPLE_KB])
    settings = Settings(database_url=database_url, rate_limit_questions=2, rate_limit_handoffs=1)
    service = SupportService(settings, db=db)
    with live_server(create_app(service, mount_chat=False)) as url, httpx.Client(base_url=url, timeout=60) as http:
        question = {"message": "How do I do a factory reset?"}
        answers = [http.post("/api/chat", json=question) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        refused = http.post("/api/chat", json=question)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "at most 2 a minute" in refused.json()["detail"]
        v1 = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "reset?"}]})
        assert v1.status_code == 429 and v1.json()["error"]["type"] == "rate_limit_exceeded"
        conversation = {k: answers[0].json()[k] for k in ("conversation_id", "conversation_token")}
        assert http.post("/api/handoff", json=conversation).status_code == 200
        assert http.post("/api/handoff", json=conversation).status_code == 429
    with db.connection() as conn:
        stored = conn.execute("SELECT count(*) AS n FROM messages WHERE role = 'user'").fetchone()["n"]
        handoffs = conn.execute("SELECT count(*) AS n FROM handoffs").fetchone()["n"]
    assert (stored, handoffs) == (2, 1)
