"""Personal data at rest: what customers type is stored with card numbers, IBANs, e-mail addresses and
phone numbers as placeholders (real server, real PostgreSQL); the chain still works on what they sent."""

from pathlib import Path

import httpx
import pytest

from bot.api import create_app
from bot.background_server import live_server
from bot.service import SupportService
from supportbot.settings import Settings

SAMPLE_KB = Path(__file__).resolve().parents[1] / "bot" / "sample_kb"
CARD = "4111 1111 1111 1111"


def serve(database_url, db, **settings):
    service = SupportService(Settings(database_url=database_url, **settings), db=db)
    return live_server(create_app(service, mount_chat=False))


def stored(db) -> str:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT content || coalesce(' ' || standalone, '') AS t FROM messages WHERE role = 'user' "
            "UNION ALL SELECT coalesce(comment, '') FROM feedback "
            "UNION ALL SELECT reason || ' ' || transcript::text FROM handoffs").fetchall()
    return "\n".join(r["t"] for r in rows)


@pytest.fixture
def kb(ingestor):
    ingestor.ingest_paths([SAMPLE_KB])


def test_card_numbers_ibans_and_contacts_are_stored_as_placeholders(kb, database_url, db):
    question = f"My card is {CARD}, mail me at jo.lee@example.com. How do I do a factory reset?"
    with serve(database_url, db) as url, httpx.Client(base_url=url, timeout=60) as client:
        answer = client.post("/api/chat", json={"message": question}).json()
        assert answer["standalone_question"] == question  # the chain works on what the customer sent
        token = answer["conversation_token"]
        rated = client.post("/api/feedback", json={"message_id": answer["message_id"], "conversation_token": token,
                                                   "rating": -1, "comment": "refund to DE89 3704 0044 0532 0130 00"})
        handoff = client.post("/api/handoff", json={"conversation_id": answer["conversation_id"],
                                                    "conversation_token": token,
                                                    "reason": f"call +44 20 7946 0958 about {CARD}"})
        assert rated.status_code == handoff.status_code == 200
    kept = stored(db)
    for secret in ("4111", "jo.lee@example.com", "DE89", "7946"):
        assert secret not in kept
    for placeholder in ("<CARD>", "<EMAIL>", "<IBAN>", "<PHONE>"):
        assert placeholder in kept
    assert "factory reset" in kept  # the rest of the question is kept as typed


def test_store_personal_data_keeps_them_as_sent(kb, database_url, db):
    with serve(database_url, db, store_personal_data=True) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.post("/api/chat", json={"message": f"card {CARD}: how do I do a factory reset?"})
    assert CARD in stored(db)
