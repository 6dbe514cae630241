"""Conversations in Postgres: messages, the passages each answer used, feedback and handoffs.

The app keeps no conversation state in memory: every turn reads its history from here, so any
replica can serve any turn.

Whoever starts a conversation through the API owns it: :meth:`ConversationStore.start` picks the id
and a secret token, returns the token once and keeps only its SHA-256 (the token is 256 random bits,
so a plain hash is enough). :meth:`~ConversationStore.check_owner` guards every later read, turn,
rating and handoff; a wrong token and an unknown id get the same answer, so ids cannot be probed.
The chat UI keeps its conversation id in the server-side session instead, and never shows it.

What customers type is stored with personal data replaced by typed placeholders (<CARD>, <IBAN>,
<EMAIL>, <PHONE>, …; the redactor the training data goes through), unless SUPPORTBOT_STORE_PERSONAL_DATA
is set: a card number sent to a support chat must not sit in plain text in its database. The answer
itself is computed from what the customer sent; only what is kept is redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from psycopg.types.json import Jsonb

from supportbot.database import Database

if TYPE_CHECKING:
    from bot.chain import Answer


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str


class UnknownMessage(LookupError):
    pass


class Requested(NamedTuple):
    handoff_id: int
    new: bool  # False: the conversation's open request was refreshed instead


class UnknownConversation(LookupError):
    pass


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _matches(stored: bytes | None, token: str | None) -> bool:
    return stored is not None and token is not None and hmac.compare_digest(bytes(stored), _token_hash(token))


class Rated(NamedTuple):
    feedback_id: int
    new: bool  # False: it replaced an earlier rating of the same answer


_redactor_lock = threading.Lock()
_redactor_instance: Any = None


def _redactor() -> Any:
    global _redactor_instance
    with _redactor_lock:  # the warm-up thread and a first question must not both load it
        if _redactor_instance is None:
            from finetune.redact import Redactor  # presidio: about 5 s to load, once per process

            _redactor_instance = Redactor()
        return _redactor_instance


def warm_redactor() -> None:
    """Load the redactor ahead of the first message that needs it."""
    _redactor()


def redact_personal_data(text: str) -> str:
    """*text* with card numbers, IBANs, e-mail addresses, phone numbers and the like as placeholders."""
    return _redactor().redact(text).text


class ConversationStore:
    def __init__(self, db: Database, keep_personal_data: bool = False) -> None:
        self.db = db
        self.keep_personal_data = keep_personal_data

    def _stored(self, text: str | None) -> str | None:
        return text if self.keep_personal_data or not text else redact_personal_data(text)

    def start(
        self, channel: str = "api", user_ref: str | None = None, collection: str | None = None,
        product: str | None = None,
    ) -> tuple[uuid.UUID, str]:
        """A new conversation: its id and the secret token its owner must show to continue it."""
        conversation_id, token = uuid.uuid4(), secrets.token_urlsafe(32)
        with self.db.connection() as conn:
            conn.execute(
                """INSERT INTO conversations (id, channel, user_ref, collection, product, token_hash)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                (conversation_id, channel, user_ref, collection, product, _token_hash(token)),
            )
        return conversation_id, token

    def check_owner(self, conversation_id: uuid.UUID, token: str | None) -> None:
        """Raise :class:`UnknownConversation` unless *token* is the conversation's own."""
        with self.db.connection() as conn:
            row = conn.execute("SELECT token_hash FROM conversations WHERE id = %s", (conversation_id,)).fetchone()
        if row is None or not _matches(row["token_hash"], token):
            raise UnknownConversation(
                f"no conversation {conversation_id} for this conversation_token: send the conversation_token "
                "returned with the conversation's first answer, or leave conversation_id out to start a new one"
            )

    def check_answer_owner(self, message_id: uuid.UUID, token: str | None) -> None:
        """Raise :class:`UnknownMessage` unless *message_id* is an answer in a conversation *token* owns."""
        with self.db.connection() as conn:
            row = conn.execute(
                """SELECT c.token_hash FROM messages m JOIN conversations c ON c.id = m.conversation_id
                   WHERE m.id = %s AND m.role = 'assistant'""",
                (message_id,),
            ).fetchone()
        if row is None or not _matches(row["token_hash"], token):
            raise UnknownMessage(f"no answer {message_id} in a conversation of this conversation_token")

    def ensure(
        self,
        conversation_id: uuid.UUID | None = None,
        channel: str = "api",
        user_ref: str | None = None,
        collection: str | None = None,
        product: str | None = None,
    ) -> uuid.UUID:
        """Create the conversation if it does not exist yet; return its id.

        Only for ids the server made (the chat UI's session) or whose owner was checked: it never
        makes a conversation the API can reach.
        """
        conversation_id = conversation_id or uuid.uuid4()
        with self.db.connection() as conn:
            conn.execute(
                """INSERT INTO conversations (id, channel, user_ref, collection, product)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
                (conversation_id, channel, user_ref, collection, product),
            )
        return conversation_id

    def history(self, conversation_id: uuid.UUID, turns: int = 6) -> list[Turn]:
        """The last *turns* messages, oldest first."""
        with self.db.connection() as conn:
            rows = conn.execute(
                """SELECT role, content FROM messages WHERE conversation_id = %s
                   ORDER BY created_at DESC, id LIMIT %s""",
                (conversation_id, turns),
            ).fetchall()
        return [Turn(r["role"], r["content"]) for r in reversed(rows)]

    def add_user_message(self, conversation_id: uuid.UUID, content: str) -> uuid.UUID:
        """Stored before the answer is generated, so a question is never lost."""
        message_id = uuid.uuid4()
        with self.db.connection() as conn:
            conn.execute(
                "INSERT INTO messages (id, conversation_id, role, content) VALUES (%s, %s, 'user', %s)",
                (message_id, conversation_id, self._stored(content)),
            )
            conn.execute("UPDATE conversations SET updated_at = now() WHERE id = %s", (conversation_id,))
        return message_id

    def add_answer(self, conversation_id: uuid.UUID, question_id: uuid.UUID, answer: Answer) -> uuid.UUID:
        """Store an answer with its passages (and its handoff request, if any) in one transaction."""
        message_id = uuid.uuid4()
        cited = {c.number for c in answer.citations}
        with self.db.connection() as conn, conn.transaction():
            conn.execute("UPDATE messages SET standalone = %s WHERE id = %s",
                         (self._stored(answer.standalone), question_id))
            conn.execute(
                """INSERT INTO messages (id, conversation_id, role, content, handoff_reason, model, adapter,
                                         ttft_ms, total_ms)
                   VALUES (%s, %s, 'assistant', %s, %s, %s, %s, %s, %s)""",
                (message_id, conversation_id, answer.text, answer.handoff.reason if answer.handoff else None,
                 answer.model, answer.adapter, answer.ttft_ms, answer.total_ms),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO message_passages (message_id, number, cited, chunk_id, document_id, title, source,
                                                     heading_path, page, text, score)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    [(message_id, p.number, p.number in cited, p.hit.chunk_id, p.hit.document_id, p.hit.title,
                      p.hit.source, p.hit.heading_path, p.hit.page, p.hit.text, p.hit.score)
                     for p in answer.passages],
                )
            if answer.handoff:
                self._handoff(conn, conversation_id, message_id, answer.handoff.reason)
        return message_id

    def add_feedback(self, message_id: uuid.UUID, rating: int, comment: str | None = None) -> Rated:
        """Rate an answer; a second rating of the same answer replaces the first (one per answer)."""
        if rating not in (-1, 1):
            raise ValueError("rating must be 1 (thumbs up) or -1 (thumbs down)")
        with self.db.connection() as conn:
            known = conn.execute("SELECT 1 FROM messages WHERE id = %s AND role = 'assistant'", (message_id,))
            if not known.fetchone():
                raise UnknownMessage(f"no answer with id {message_id}")
            row = conn.execute(
                """INSERT INTO feedback (message_id, rating, comment) VALUES (%s, %s, %s)
                   ON CONFLICT (message_id) DO UPDATE
                   SET rating = EXCLUDED.rating, comment = EXCLUDED.comment, created_at = now()
                   RETURNING id, (xmax = 0) AS new""",  # xmax is 0 for a row this statement inserted
                (message_id, rating, self._stored(comment)),
            ).fetchone()
        return Rated(row["id"], row["new"])

    def update_feedback(self, feedback_id: int, rating: int, comment: str | None = None) -> bool:
        """Change a rating (a customer changing their vote); False if it no longer exists."""
        with self.db.connection() as conn:
            row = conn.execute(
                "UPDATE feedback SET rating = %s, comment = %s WHERE id = %s RETURNING id",
                (rating, self._stored(comment), feedback_id),
            ).fetchone()
        return row is not None

    def delete_feedback(self, feedback_id: int) -> None:
        with self.db.connection() as conn:
            conn.execute("DELETE FROM feedback WHERE id = %s", (feedback_id,))

    def request_handoff(
        self, conversation_id: uuid.UUID, reason: str, message_id: uuid.UUID | None = None
    ) -> Requested:
        """Ask for a person, with the whole transcript as it stands."""
        with self.db.connection() as conn, conn.transaction():
            return self._handoff(conn, conversation_id, message_id, reason)

    def _handoff(self, conn: Any, conversation_id: uuid.UUID, message_id: uuid.UUID | None, reason: str) -> Requested:
        # One open request per conversation: asking again refreshes it (transcript, latest reason), so a customer
        # pressing the button ten times (or a script) leaves one request in the agents' queue.
        transcript = self._transcript(conn, conversation_id)
        open_request = conn.execute(
            "SELECT id FROM handoffs WHERE conversation_id = %s AND status = 'open' ORDER BY id DESC LIMIT 1 "
            "FOR UPDATE",
            (conversation_id,),
        ).fetchone()
        if open_request is not None:
            conn.execute(
                "UPDATE handoffs SET transcript = %s, reason = %s, message_id = coalesce(%s, message_id) WHERE id = %s",
                (transcript, self._stored(reason), message_id, open_request["id"]),
            )
            return Requested(open_request["id"], False)
        row = conn.execute(
            "INSERT INTO handoffs (conversation_id, message_id, reason, transcript) VALUES (%s, %s, %s, %s) "
            "RETURNING id",
            (conversation_id, message_id, self._stored(reason), transcript),
        ).fetchone()
        return Requested(row["id"], True)

    @staticmethod
    def _transcript(conn: Any, conversation_id: uuid.UUID) -> Jsonb:
        transcript = conn.execute(
            "SELECT role, content, created_at FROM messages WHERE conversation_id = %s ORDER BY created_at, id",
            (conversation_id,),
        ).fetchall()
        return Jsonb([{**t, "created_at": t["created_at"].isoformat()} for t in transcript])
