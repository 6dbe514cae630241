"""Two real `supportbot serve` processes (replicas) on one database and one data folder serve one
conversation turn by turn, alternately, through both chat APIs: everything a turn needs comes from
Postgres, nothing from the process that served the turn before."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bot.cli import SAMPLE_KB
from finetune.base_model import base_model_path
from supportbot.settings import get_settings
from tests.server_process import ServerProcess

QUESTIONS = [
    "How do I turn on the guest network?",  # A, /api/chat
    "Can it switch off by itself?",  # B, /api/chat streamed: refers back to A's turn
    "What does a solid amber light mean?",  # A, /v1/chat/completions
    "And how do I fix that?",  # B, /v1/chat/completions streamed: refers back to A's turn
]


def sse_data(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event name, data) of a server-sent event stream; the OpenAI stream names no events."""
    name = "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and line != "data: [DONE]":
            yield name, json.loads(line.removeprefix("data: "))


def api_chat(http: httpx.Client, message: str, owner: dict[str, str], stream: bool) -> dict[str, Any]:
    """*owner*: the conversation's id and token (empty: a new conversation)."""
    body = {"message": message, **owner, "stream": stream}
    if not stream:
        response = http.post("/api/chat", json=body)
        assert response.status_code == 200, response.text
        return response.json()
    with http.stream("POST", "/api/chat", json=body) as response:
        assert response.status_code == 200
        events = list(sse_data(response))
    assert events[-1][0] == "answer" and any(name == "token" for name, _ in events)
    return events[-1][1]


def openai_chat(http: httpx.Client, message: str, owner: dict[str, str], stream: bool) -> dict[str, Any]:
    """Only the new message: with X-Conversation-Id the history comes from the database."""
    body = {"model": "supportbot", "messages": [{"role": "user", "content": message}], "stream": stream}
    headers = {"X-Conversation-Id": owner["conversation_id"], "X-Conversation-Token": owner["conversation_token"]}
    if not stream:
        response = http.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()
    with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        chunks = [data for _, data in sse_data(response)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    return chunks[-1]


def test_two_processes_serve_one_conversation_alternately(database_url: str, db: Any, ingestor: Any,
                                                           tmp_path: Path) -> None:
    ingestor.ingest_paths([SAMPLE_KB])
    base_model_path(get_settings())  # converted once here, not by both servers at once
    # One data folder for both, as replicas on a shared volume; the chat secret must then be shared (README).
    env = {**os.environ, "DATABASE_URL": database_url, "SUPPORTBOT_CHAT_SECRET": "replicas-share-this"}
    with ExitStack() as stack:
        servers = [ServerProcess(env, tmp_path / f"serve-{name}.log") for name in "ab"]
        for server in servers:
            stack.callback(server.stop)
        a, b = (stack.enter_context(httpx.Client(base_url=s.wait_ready(), timeout=180)) for s in servers)

        first = api_chat(a, QUESTIONS[0], {}, stream=False)
        conversation = first["conversation_id"]
        owner = {"conversation_id": conversation, "conversation_token": first["conversation_token"]}
        second = api_chat(b, QUESTIONS[1], owner, stream=True)  # the token is checked on the other replica
        third = openai_chat(a, QUESTIONS[2], owner, stream=False)
        fourth = openai_chat(b, QUESTIONS[3], owner, stream=True)
        assert [r["conversation_id"] for r in (second, third, fourth)] == [conversation] * 3

        # Feedback goes to the other process than the one that answered.
        for http, answer, rating in ((b, first, 1), (a, second, -1), (b, third, 1), (a, fourth, -1)):
            response = http.post("/api/feedback", json={"message_id": answer["message_id"], "rating": rating,
                                                        "conversation_token": owner["conversation_token"]})
            assert response.status_code == 200, response.text

    with db.connection() as conn:
        conversations = conn.execute("SELECT id, channel FROM conversations").fetchall()
        messages = conn.execute(
            "SELECT id, role, content, standalone FROM messages WHERE conversation_id = %s ORDER BY created_at",
            (conversation,)).fetchall()
        feedback = conn.execute("SELECT message_id, rating FROM feedback ORDER BY id").fetchall()
    assert [str(c["id"]) for c in conversations] == [conversation]  # no process started one of its own
    assert [m["role"] for m in messages] == ["user", "assistant"] * 4
    assert [m["content"] for m in messages[::2]] == QUESTIONS
    answers = [first, second, third, fourth]
    assert [str(m["id"]) for m in messages[1::2]] == [r["message_id"] for r in answers]
    assert messages[3]["content"] == second["answer"]
    # Each follow-up was condensed with the turn the other process had just stored.
    assert messages[2]["standalone"] == f"{QUESTIONS[0]} {QUESTIONS[1]}"
    assert messages[6]["standalone"] == f"{QUESTIONS[2]} {QUESTIONS[3]}"
    assert [(str(f["message_id"]), f["rating"]) for f in feedback] == [
        (r["message_id"], rating) for r, rating in zip(answers, (1, -1, 1, -1), strict=True)]
