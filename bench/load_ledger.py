"""What the simulated customers of bench/load_test.py saw, and whether the database kept all of it.

The customers append a ``sent`` line before each request and a ``done`` line after it (see
load_customers.py). From those lines: throughput, time to first token, total time and errors; and,
against the ``messages`` table, the lost-message check: every question sent and every answer
received must be stored, in its conversation, with the same text (and the answer under the
message id the server announced) — and no question the server refused (HTTP 503) may be.

The server names conversations (a client cannot), so the ledger keys them by the customer's own
name (``conversation``) and learns the server's id from the first answer. Questions of a
conversation that never got an answer cannot be matched one by one; the totals stored while the
customers ran (messages and conversations created in the ledger's time window) cover them.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import percentile


def _key(record: dict[str, Any]) -> tuple[str, int, int]:
    # A refused question is asked again: the same turn, the next attempt.
    return record["conversation"], record["turn"], record["attempt"]


@dataclass
class Ledger:
    sent: list[dict[str, Any]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Ledger:
        ledger = cls()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    (ledger.sent if record["event"] == "sent" else ledger.done).append(record)
        return ledger

    @property
    def answered(self) -> list[dict[str, Any]]:
        return [d for d in self.done if d["ok"]]

    @property
    def refused(self) -> list[dict[str, Any]]:
        """Requests the server turned away at once (503, admission control): not errors, and not stored."""
        return [d for d in self.done if d.get("refused")]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [d for d in self.done if not d["ok"] and not d.get("refused")]

    @property
    def unfinished(self) -> list[dict[str, Any]]:
        """Requests sent whose customer was stopped before the answer came (the drain bound ran out)."""
        finished = {_key(d) for d in self.done}
        return [s for s in self.sent if _key(s) not in finished]


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "max": None}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "mean": statistics.fmean(values), "max": max(values)}


def summarize(ledger: Ledger, duration: float) -> dict[str, Any]:
    """Client-side figures. The window is the *duration* customers were asking, from the first request;
    answers completed during the drain after it count in the latency figures but not in the window's throughput."""
    if not ledger.sent:
        return {"requests": 0}
    start = min(s["sent_at"] for s in ledger.sent)
    window_end = start + duration
    answered = ledger.answered
    generated = [d for d in answered if not d.get("handoff")]
    in_window = [d for d in answered if d["done_at"] <= window_end]
    last = max((d["done_at"] for d in ledger.done), default=start)
    errors = ledger.errors
    refused = ledger.refused
    # Questions whose customer saw a refusal and never an answer (the level ended before a retry got in).
    answered_keys = {(d["conversation"], d["turn"]) for d in answered}
    given_up = {(d["conversation"], d["turn"]) for d in refused} - answered_keys
    return {
        "requests": len(ledger.sent),
        "answered": len(answered),
        "errors": len(errors),
        "unfinished": len(ledger.unfinished),
        "refused": len(refused),
        "refused_share": len(refused) / len(ledger.sent),
        "questions_refused_never_answered": len(given_up),
        "refusal_s": _stats([d["total_s"] for d in refused]),
        "error_rate": (len(errors) + len(ledger.unfinished)) / len(ledger.sent),
        "error_samples": sorted({d["error"] for d in errors})[:5],
        "handoffs": {reason: sum(d.get("handoff") == reason for d in answered)
                     for reason in sorted({d["handoff"] for d in answered if d.get("handoff")})},
        "conversations": len({s["conversation"] for s in ledger.sent}),
        "window_s": duration,
        "drain_s": max(0.0, last - window_end),
        # Offered load: questions customers sent per second of the window.
        "messages_per_s": sum(s["sent_at"] <= window_end for s in ledger.sent) / duration,
        "answers_per_s": len(in_window) / duration,
        "generated_answers_per_s": sum(not d.get("handoff") for d in in_window) / duration,
        # Over the whole run including the drain: what the server got through.
        "answers_per_s_overall": len(answered) / max(last - start, 1e-9),
        "ttft_s": _stats([d["ttft_s"] for d in answered if d["ttft_s"] is not None]),
        "total_s": _stats([d["total_s"] for d in answered]),
        "ttft_generated_s": _stats([d["ttft_s"] for d in generated if d["ttft_s"] is not None]),
        # The chain's own clock (Answer.timings_ms) against the customer's: the difference is time spent
        # in the HTTP server outside the chain — waiting for a worker thread before it starts, or to
        # deliver pieces already generated.
        "server_ttft_s": _stats([d["server_timings_ms"]["first_token"] / 1000 for d in answered
                                 if (d.get("server_timings_ms") or {}).get("first_token") is not None]),
        "outside_chain_s": _stats([d["total_s"] - d["server_timings_ms"]["total"] / 1000 for d in answered
                                   if d.get("server_timings_ms")]),
        "total_generated_s": _stats([d["total_s"] for d in generated]),
    }


def check_stored(ledger: Ledger, db: Any, exclude: set[str] = frozenset()) -> dict[str, Any]:
    """Match every question sent and every answer received against the ``messages`` table; no refused
    question may be there. *exclude*: server conversation ids that are not the customers' (a warm-up)."""
    if not ledger.sent:
        return {"questions_sent": 0}
    refused = {_key(d) for d in ledger.refused}
    admitted = [s for s in ledger.sent if _key(s) not in refused]
    # The server's id of each customer conversation, from the answers that came back.
    server_id = {d["conversation"]: d["answer_conversation_id"] for d in ledger.answered
                 if d.get("answer_conversation_id")}
    since = min(s["sent_at"] for s in ledger.sent) - 1
    # Every row of a customer's request is written before its done line; the next run starts after.
    until = max([d["done_at"] for d in ledger.done] + [s["sent_at"] for s in ledger.sent]) + 0.5
    with db.connection() as conn:
        rows = conn.execute(
            """SELECT m.id::text, m.conversation_id::text, m.role, m.content FROM messages m
               JOIN conversations c ON c.id = m.conversation_id
               WHERE c.created_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)
                 AND NOT m.conversation_id = ANY(%s::uuid[])
               ORDER BY m.conversation_id, m.created_at, m.id""",
            (since, until, sorted(exclude)),
        ).fetchall()
        stored_conversations = conn.execute(
            """SELECT count(*) AS n FROM conversations
               WHERE created_at BETWEEN to_timestamp(%s) AND to_timestamp(%s) AND NOT id = ANY(%s::uuid[])""",
            (since, until, sorted(exclude)),
        ).fetchone()["n"]
    questions: dict[str, list[str]] = defaultdict(list)
    answers: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        if row["role"] == "user":
            questions[row["conversation_id"]].append(row["content"])
        else:
            answers[row["conversation_id"]][row["id"]] = row["content"]

    lost_questions, lost_answers, mismatched = [], [], []
    per_conversation_mismatch = 0
    sent_by_conversation: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in admitted:
        sent_by_conversation[s["conversation"]].append(s)
    ok = {(d["conversation"], d["turn"]) for d in ledger.answered}
    for conversation, sent in sent_by_conversation.items():
        if conversation not in server_id:
            continue  # no answer came back: covered by the totals below
        stored = questions.get(server_id[conversation], [])
        # A customer asks one question at a time, so the stored order is the sent order.
        for s in sorted(sent, key=lambda s: s["turn"]):
            i = s["turn"] - 1
            if i >= len(stored) or stored[i] != s["question"]:
                lost_questions.append({"conversation": conversation, "turn": s["turn"],
                                       "request_ok": (conversation, s["turn"]) in ok})
        if len(stored) != len(sent):
            per_conversation_mismatch += 1
    questions_stored = sum(len(v) for v in questions.values())
    received = 0
    for d in ledger.answered:
        received += 1
        text = answers.get(d["answer_conversation_id"], {}).get(d["message_id"])
        if text is None:
            lost_answers.append({"conversation": d["conversation"], "message_id": d["message_id"]})
        elif text != d["answer"]:
            mismatched.append({"conversation": d["conversation"], "message_id": d["message_id"]})
    stored_answers = sum(len(a) for a in answers.values())
    # Totals: more questions (or conversations) stored than admitted means a refused one was kept.
    refused_stored = max(0, questions_stored - len(admitted))
    refused_only_stored = max(0, stored_conversations - len(sent_by_conversation))
    return {
        "conversations_sent": len({s["conversation"] for s in ledger.sent}),
        "conversations_admitted": len(sent_by_conversation),
        "conversations_stored": stored_conversations,
        "questions_sent": len(admitted),  # admitted ones
        "questions_refused": len(refused),
        "refused_questions_stored": refused_stored,
        "refused_only_conversations_stored": refused_only_stored,
        "questions_stored": questions_stored,
        "answers_received": received,
        "answers_stored": stored_answers,
        # Stored answers no customer received: requests cut off at the end, answered after they left.
        "answers_stored_not_received": stored_answers - (received - len(lost_answers)),
        # Admitted questions missing from the database: matched ones, plus any shortfall in the totals.
        "lost_questions": len(lost_questions) + max(0, len(admitted) - questions_stored),
        # Of the matched ones, questions whose request failed or was cut off (the customer saw no answer either).
        "lost_questions_of_failed_requests": sum(not q["request_ok"] for q in lost_questions),
        "lost_answers": len(lost_answers),
        "answer_text_mismatches": len(mismatched),
        "conversations_with_count_mismatch": per_conversation_mismatch,
        "lost_samples": (lost_questions + lost_answers + mismatched)[:5],
        "zero_lost": not (lost_questions or lost_answers or mismatched) and questions_stored >= len(admitted),
        "nothing_refused_stored": not (refused_stored or refused_only_stored),
    }
