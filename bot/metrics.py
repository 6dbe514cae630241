"""Prometheus metrics, exposed at GET /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from bot.chain import Answer

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)

REQUESTS = Counter("supportbot_requests_total", "HTTP requests", ["endpoint", "status"])
ANSWERS = Counter("supportbot_answers_total", "Answers given", ["channel"])
TIME_TO_FIRST_TOKEN = Histogram("supportbot_time_to_first_token_seconds", "Question in → first token out",
                                buckets=_LATENCY_BUCKETS)
ANSWER_TIME = Histogram("supportbot_answer_seconds", "Question in → answer complete", buckets=_LATENCY_BUCKETS)
RETRIEVAL_TIME = Histogram("supportbot_retrieval_seconds", "Question in → prompt ready (embed, search, prompt)",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
HANDOFFS = Counter("supportbot_handoffs_total", "Conversations handed to a person", ["reason"])
FEEDBACK = Counter("supportbot_feedback_total", "Feedback on answers", ["rating"])
# Admission control (bot/admission.py): the answers admitted and not finished, and those refused.
ANSWERS_IN_FLIGHT = Gauge("supportbot_answers_in_flight", "Answers in progress or waiting for the model")
ANSWERS_REFUSED = Counter("supportbot_answers_refused_total",
                          "Questions refused at once because SUPPORTBOT_MAX_QUEUED_ANSWERS were in flight",
                          ["channel"])

# The serving guard (bot/answer/checks.py): model-written text cut because it held a link, e-mail, phone, price,
# order number, handle, placeholder or name that the retrieved passages do not (finetune.targets.leaks).
GUARD_CUTS = Counter("supportbot_guard_cuts_total", "Model-written sentences or closing lines cut at serving time "
                     "for holding what the passages do not", ["kind"])


# Label values come from fixed sets only: a free-text reason sent by an anonymous client became a
# public label (a card number was seen), and every new value grew /metrics for good.
HANDOFF_REASONS = frozenset({"customer_asked", "needs_account_access", "no_relevant_passages", "model_unsure"})


def handoff_reason(reason: str) -> str:
    """*reason* as a metric label: one of :data:`HANDOFF_REASONS`, else "other"."""
    return reason if reason in HANDOFF_REASONS else "other"


def count_rating(rating: int) -> None:
    FEEDBACK.labels("up" if rating > 0 else "down").inc()


def observe_answer(answer: Answer, channel: str) -> None:
    ANSWERS.labels(channel).inc()
    RETRIEVAL_TIME.observe(answer.retrieval_ms / 1000)
    ANSWER_TIME.observe(answer.total_ms / 1000)
    if answer.ttft_ms is not None:
        TIME_TO_FIRST_TOKEN.observe(answer.ttft_ms / 1000)
    if answer.handoff:
        HANDOFFS.labels(handoff_reason(answer.handoff.reason)).inc()
