"""What the simulated customers of bench/load_test.py saw, and whether the database kept all of it.

The customers append a ``sent`` line before each request and a ``done`` line after it (see
load_customers.py). From those lines: throughput, time to first token, total time and errors; and,
against the ``messages`` table, the lost-message check: every question sent and every answer
received must be stored, in its conversation, with the same text (and the answer under the
message id the server announced) — and no question the server refused (HTTP 503) may be.
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
    # A refused question is asked again: the same turn, the next attempt (0 in ledgers from before).
    return record["conversation_id"], record["turn"], record.get("attempt", 0)


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
    answered_keys = {(d["conversation_id"], d["turn"]) for d in answered}
    given_up = {(d["conversation_id"], d["turn"]) for d in refused} - answered_keys
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
        "conversations": len({s["conversation_id"] for s in ledger.sent}),
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
    """Match every question sent and every answer received against the ``messages`` table; a refused
    question must not be there (nor its conversation, when every question of it was refused)."""
    refused = {_key(d) for d in ledger.refused}
    conversations = sorted({s["conversation_id"] for s in ledger.sent} - exclude)
    with db.connection() as conn:
        rows = conn.execute(
            """SELECT id::text, conversation_id::text, role, content FROM messages
               WHERE conversation_id = ANY(%s::uuid[]) ORDER BY conversation_id, created_at, id""",
            (conversations,),
        ).fetchall()
        stored_conversations = conn.execute(
            "SELECT count(*) AS n FROM conversations WHERE id = ANY(%s::uuid[])", (conversations,)
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
    for s in ledger.sent:
        if s["conversation_id"] not in exclude and _key(s) not in refused:
            sent_by_conversation[s["conversation_id"]].append(s)
    ok = {(d["conversation_id"], d["turn"]) for d in ledger.answered}
    for conversation_id, sent in sent_by_conversation.items():
        stored = questions.get(conversation_id, [])
        # A customer asks one question at a time, so the stored order is the sent order.
        for s in sorted(sent, key=lambda s: s["turn"]):
            i = s["turn"] - 1
            if i >= len(stored) or stored[i] != s["question"]:
                lost_questions.append({"conversation_id": conversation_id, "turn": s["turn"],
                                       "request_ok": (conversation_id, s["turn"]) in ok})
        if len(stored) != len(sent):
            per_conversation_mismatch += 1
    # Stored questions beyond those admitted: a refused question half-stored (or a duplicate).
    refused_stored = sum(max(0, len(questions.get(c, [])) - len(sent_by_conversation.get(c, [])))
                         for c in conversations)
    only_refused = [c for c in conversations if c not in sent_by_conversation]
    received = 0
    for d in ledger.answered:
        if d["conversation_id"] in exclude:
            continue
        received += 1
        text = answers.get(d["conversation_id"], {}).get(d["message_id"])
        if text is None:
            lost_answers.append({"conversation_id": d["conversation_id"], "message_id": d["message_id"]})
        elif text != d["answer"]:
            mismatched.append({"conversation_id": d["conversation_id"], "message_id": d["message_id"]})
    stored_answers = sum(len(a) for a in answers.values())
    with db.connection() as conn:
        only_refused_stored = conn.execute(
            "SELECT count(*) AS n FROM conversations WHERE id = ANY(%s::uuid[])", (only_refused,)
        ).fetchone()["n"]
    return {
        "conversations_sent": len(conversations),
        "conversations_stored": stored_conversations,
        "questions_sent": sum(len(v) for v in sent_by_conversation.values()),  # admitted ones
        "questions_refused": len(refused),
        "refused_questions_stored": refused_stored,
        "refused_only_conversations": len(only_refused),
        "refused_only_conversations_stored": only_refused_stored,
        "questions_stored": sum(len(v) for v in questions.values()),
        "answers_received": received,
        "answers_stored": stored_answers,
        # Stored answers no customer received: requests cut off at the end, answered after they left.
        "answers_stored_not_received": stored_answers - (received - len(lost_answers)),
        "lost_questions": len(lost_questions),
        # Of those, questions whose request failed or was cut off (the customer saw no answer either).
        "lost_questions_of_failed_requests": sum(not q["request_ok"] for q in lost_questions),
        "lost_answers": len(lost_answers),
        "answer_text_mismatches": len(mismatched),
        "conversations_with_count_mismatch": per_conversation_mismatch,
        "lost_samples": (lost_questions + lost_answers + mismatched)[:5],
        "zero_lost": not (lost_questions or lost_answers or mismatched),
        "nothing_refused_stored": not (refused_stored or only_refused_stored),
    }
