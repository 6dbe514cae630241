"""A conversation belongs to whoever started it (issue: customer B sent customer A's conversation id
and read A's name, e-mail and phone back). Real server, real PostgreSQL, real model."""

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
SECRET = "I am Alice Example, alice@example.com, +44 20 7946 0958. How do I turn on the guest network?"


@pytest.fixture
def server(database_url, db, ingestor):
    ingestor.ingest_paths([SAMPLE_KB])
    settings = Settings(database_url=database_url, store_personal_data=True)  # plain text: easy to spot a leak
    service = SupportService(settings, db=db)
    with live_server(create_app(service, mount_chat=False)) as url:
        yield url, service


def _rows(service: SupportService, table: str, conversation: str) -> int:
    with service.db.connection() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {table} WHERE conversation_id = %s",
                            (conversation,)).fetchone()["n"]


def test_only_the_owner_continues_rates_or_hands_off(server):
    url, service = server
    with httpx.Client(base_url=url, timeout=120) as http:
        alice = http.post("/api/chat", json={"message": SECRET}).json()
        mallory = http.post("/api/chat", json={"message": "What is WPA3?"}).json()
        a_id, a_token = alice["conversation_id"], alice["conversation_token"]
        assert a_token and mallory["conversation_token"] and a_token != mallory["conversation_token"]

        # Another customer's id, with no token, a wrong one, or the attacker's own: the same 404, nothing stored.
        for token in (None, "x" * 43, mallory["conversation_token"]):
            stolen = http.post("/api/chat", json={"message": "and that?", "conversation_id": a_id,
                                                  "conversation_token": token})
            assert stolen.status_code == 404 and "alice" not in stolen.text.lower()
            assert "conversation_token" in stolen.json()["detail"]
        assert _rows(service, "messages", a_id) == 2

        # An id the client made up is not created.
        made_up = str(uuid.uuid4())
        assert http.post("/api/chat", json={"message": "hi", "conversation_id": made_up,
                                            "conversation_token": a_token}).status_code == 404
        with service.db.connection() as conn:
            created = conn.execute("SELECT count(*) AS n FROM conversations WHERE id = %s", (made_up,)).fetchone()
        assert created["n"] == 0

        # Ratings and handoffs need the owner's token too.
        vote = {"message_id": alice["message_id"], "rating": -1}
        assert http.post("/api/feedback", json={**vote, "conversation_token": mallory["conversation_token"]}
                         ).status_code == 404
        assert http.post("/api/feedback", json={**vote, "conversation_token": a_token}).status_code == 200
        handoffs = _rows(service, "handoffs", a_id)  # 0, or 1 if the first answer handed off
        wrong_handoff = {"conversation_id": a_id, "conversation_token": mallory["conversation_token"]}
        assert http.post("/api/handoff", json=wrong_handoff).status_code == 404
        assert _rows(service, "handoffs", a_id) == handoffs

        # The owner goes on; pressing "talk to a person" again keeps one request in the agents' queue.
        own = http.post("/api/chat", json={"message": "Can it switch off by itself?", "conversation_id": a_id,
                                           "conversation_token": a_token}).json()
        assert own["conversation_id"] == a_id
        first = http.post("/api/handoff", json={"conversation_id": a_id, "conversation_token": a_token}).json()
        again = http.post("/api/handoff", json={"conversation_id": a_id, "conversation_token": a_token}).json()
        assert again == {"handoff_id": first["handoff_id"], "already_requested": True}
        assert _rows(service, "handoffs", a_id) == max(handoffs, 1)
    with service.db.connection() as conn:
        stored = conn.execute("SELECT token_hash FROM conversations WHERE id = %s", (a_id,)).fetchone()["token_hash"]
    assert a_token.encode() not in bytes(stored)  # only its hash is kept


def test_openai_endpoint_needs_the_token_with_the_conversation_id(server):
    url, service = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    first = client.chat.completions.create(model="supportbot", messages=[{"role": "user", "content": SECRET}])
    conversation, token = first.model_extra["conversation_id"], first.model_extra["conversation_token"]
    question = [{"role": "user", "content": "and that?"}]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="supportbot", messages=question,
                                       extra_headers={"X-Conversation-Id": conversation})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="supportbot", messages=question, extra_headers={
            "X-Conversation-Id": str(uuid.uuid4()), "X-Conversation-Token": token})
    assert _rows(service, "messages", conversation) == 2
    owned = client.chat.completions.create(model="supportbot", messages=question, extra_headers={
        "X-Conversation-Id": conversation, "X-Conversation-Token": token})
    assert owned.model_extra["conversation_id"] == conversation
    assert _rows(service, "messages", conversation) == 4
