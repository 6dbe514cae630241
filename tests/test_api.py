"""The HTTP API over real HTTP: OpenAI-compatible endpoint with the official client, SSE chat,
feedback, handoff, documents, metrics."""

import json
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from bot.api import create_app
from bot.background_server import live_server
from bot.service import SupportService
from supportbot.settings import Settings

SAMPLE_KB = Path(__file__).resolve().parents[1] / "bot" / "sample_kb"
TOKEN = "agent-secret"


@pytest.fixture
def server(database_url, db, ingestor):
    ingestor.ingest_paths([SAMPLE_KB])
    service = SupportService(Settings(database_url=database_url, agent_token=TOKEN), db=db)
    with live_server(create_app(service, mount_chat=False)) as url:
        yield url, service


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_openai_client_without_and_with_streaming(server):
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    messages = [{"role": "user", "content": "What does a solid amber light mean?"}]
    completion = client.chat.completions.create(model="supportbot", messages=messages)
    text = completion.choices[0].message.content
    assert text and completion.choices[0].finish_reason == "stop"
    citations = completion.model_extra["citations"]
    assert citations and all(f"[{c['number']}]" in text for c in citations)
    assert completion.model_extra["handoff"] is None

    chunks = list(client.chat.completions.create(model="supportbot", messages=messages, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(chunks) > 4 and streamed.strip() == text  # greedy: the same answer, token by token
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].model_extra["citations"] == citations
    assert [m["id"] for m in client.models.list().model_dump()["data"]] == ["supportbot"]


def test_openai_history_and_handoff(server):
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    completion = client.chat.completions.create(model="supportbot", messages=[
        {"role": "system", "content": "ignored: the bot has its own instructions"},
        {"role": "user", "content": "How do I factory reset the router?"},
        {"role": "assistant", "content": "Hold RESET for 10 seconds [1]."},
        {"role": "user", "content": "I'd like to speak to a human agent"},
    ])
    assert completion.model_extra["handoff"] == {"reason": "customer_asked"}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="supportbot", messages=[{"role": "assistant", "content": "hi"}])


def test_chat_sse_conversation_feedback_and_handoff(server):
    url, service = server
    with httpx.Client(base_url=url, timeout=120) as http:
        with http.stream("POST", "/api/chat", json={"message": "How do I turn on the guest network?"},
                         headers={"Accept": "text/event-stream"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
        tokens = [e["text"] for name, e in events if name == "token"]
        answer = events[-1][1]
        assert events[-1][0] == "answer" and len(tokens) > 3
        assert "".join(tokens).strip() == answer["answer"] and answer["citations"]
        conversation, token = answer["conversation_id"], answer["conversation_token"]
        assert token

        second = http.post("/api/chat", json={"message": "Can it switch off by itself?",
                                              "conversation_id": conversation, "conversation_token": token}).json()
        assert second["conversation_id"] == conversation and second["conversation_token"] is None  # sent once
        assert "guest network" in second["standalone_question"].lower()  # history came from the database

        vote = {"message_id": second["message_id"], "conversation_token": token}
        first_vote = http.post("/api/feedback", json={**vote, "rating": 1})
        assert first_vote.status_code == 200 and first_vote.json()["replaced"] is False
        changed = http.post("/api/feedback", json={**vote, "rating": -1, "comment": "too vague"})
        assert changed.json() == {"feedback_id": first_vote.json()["feedback_id"], "replaced": True}  # one per answer
        unknown = {"message_id": str(uuid.uuid4()), "conversation_token": token, "rating": 1}
        assert http.post("/api/feedback", json=unknown).status_code == 404
        assert http.post("/api/feedback", json={**vote, "rating": 5}).status_code == 422
        handoff = http.post("/api/handoff", json={"conversation_id": conversation, "conversation_token": token})
        assert handoff.status_code == 200 and handoff.json()["already_requested"] is False

    with service.db.connection() as conn:
        roles = [r["role"] for r in conn.execute(
            "SELECT role FROM messages WHERE conversation_id = %s ORDER BY created_at", (conversation,))]
        feedback = conn.execute("SELECT rating, comment FROM feedback").fetchall()
        transcript = conn.execute("SELECT reason, transcript FROM handoffs").fetchone()
        cited = conn.execute("SELECT count(*) AS n FROM message_passages WHERE cited").fetchone()["n"]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert feedback == [{"rating": -1, "comment": "too vague"}]
    assert transcript["reason"] == "customer_asked" and len(transcript["transcript"]) == 4
    assert cited >= 2


def test_documents_need_the_agent_token(server, tmp_path):
    url, _ = server
    manual = tmp_path / "lamp.md"
    manual.write_text("# Lamp\n\n## Dimming\n\nTap the top of the lamp twice to dim it to 30 percent.\n")
    files = {"files": ("lamp.md", manual.read_bytes(), "text/markdown")}
    with httpx.Client(base_url=url, timeout=120) as http:
        assert http.post("/api/documents", files=files).status_code == 401
        assert http.get("/api/documents").status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        uploaded = http.post("/api/documents", files=files, data={"collection": "lamps"}, headers=auth)
        assert uploaded.status_code == 200 and uploaded.json()["documents"][0]["outcome"] == "added"
        bad = http.post("/api/documents", files={"files": ("broken.pdf", b"%PDF-1.4 cut", "application/pdf")},
                        headers=auth)
        assert bad.status_code == 422
        assert bad.json()["documents"][0]["message"] == "broken.pdf: truncated PDF (no %%EOF marker at the end)"
        listed = http.get("/api/documents", headers=auth).json()
        lamp = next(d for d in listed if d["source"] == "lamp.md")
        search = {"query": "dim the lamp", "collection": "lamps"}
        assert http.post("/api/search", json=search).status_code == 401  # raw passages: agents only by default
        hits = http.post("/api/search", json=search, headers=auth).json()
        assert hits[0]["source"] == "lamp.md"
        assert http.delete(f"/api/documents/{lamp['id']}", headers=auth).status_code == 200
        assert http.delete(f"/api/documents/{lamp['id']}", headers=auth).status_code == 404


def test_health_metrics_and_openapi(server):
    url, service = server
    with httpx.Client(base_url=url, timeout=120) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        http.post("/api/chat", json={"message": "Does the router support WPA3?"})
        metrics = http.get("/metrics").text
        assert "supportbot_time_to_first_token_seconds_count" in metrics
        assert 'supportbot_requests_total{endpoint="/api/chat",status="200"}' in metrics
        service.settings.metrics_token = "scrape-secret"  # SUPPORTBOT_METRICS_TOKEN, read per request
        try:
            assert http.get("/metrics").status_code == 401
            scraped = http.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
            assert scraped.status_code == 200 and "supportbot_requests_total" in scraped.text
        finally:
            service.settings.metrics_token = ""
        paths = http.get("/openapi.json").json()["paths"]
        assert {"/v1/chat/completions", "/api/chat", "/api/documents", "/api/search"} <= paths.keys()


def test_an_upload_warns_when_the_ivfflat_index_needs_rebuilding(server, tmp_path, embedder, caplog):
    from ingestion.vector_index import build
    from tests.test_search import _fill_noise_near

    url, service = server
    index, _ = build(service.db, "ivfflat")
    _fill_noise_near(service.db, embedder.embed(["noise"])[0], 2 * index.rows + 1)
    manual = tmp_path / "lamp.md"
    manual.write_text("# Lamp\n\n## Dimming\n\nTap the top of the lamp twice to dim it to 30 percent.\n")
    with httpx.Client(base_url=url, timeout=120) as http:
        uploaded = http.post("/api/documents", files={"files": ("lamp.md", manual.read_bytes(), "text/markdown")},
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert uploaded.status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "bot.service"]
    assert warnings == [f"the IVFFlat index was built on {index.rows:,} chunks and the store now holds "
                        f"{3 * index.rows + 2:,}: rebuild it (supportbot vector-index build --kind ivfflat)"]
