"""The handoff gate: answer from the manuals, or pass the customer to a person.

Three kinds of signal, each catching what the others miss (figures per knowledge base from
bench/handoff_calibration.py, in the README):

- what the customer asks for: a person ("can I talk to someone"), or something only a person with
  access to their account can do (an order, a refund, a charge, a warranty claim, their data) or may
  say (legal questions, prices, stock). No manual answers "where is my order?", however close its
  words land to the manual's "order" and "delivery";
- relevance: the best passage's cosine similarity × the share of the question's content words the
  knowledge base uses at all (a question full of words it never uses is about something else);
- span match: the IDF-weighted share of the question's terms that the span chosen to answer, with its
  heading, holds (the passage is close in meaning but says nothing about what was asked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ASKS_FOR_PERSON = re.compile(
    r"\b(talk|speak|chat|connect|transfer|put)\b[^.?!]{0,30}\b(human|person|agent|someone|somebody|representative|"
    r"operator|people|staff|manager|supervisor)\b"
    r"|\b(real|live|actual) (person|human|agent)\b|\bhuman (agent|support)\b",
    re.IGNORECASE,
)
NEEDS_A_PERSON = re.compile(
    r"""
    \bmy\s+(?:\w+\s+){0,2}(?:order|orders|delivery|parcel|package|refund|invoice|bill|payments?|subscription|
        purchase|plan|contract|tariff|warranty\s+claim|credit\s+card|personal\s+data)\b
    |\b(?:order|reference|ref|invoice|ticket)\s*(?:no\.?|number|\#)?\s*[A-Z]{0,3}-?\d{3,}\b  # order 48213, WC-20931
    |\b(?:refund|refunded|invoice|charged|courier|delivery\s+driver|tracking\s+number|in\s+stock|instal{1,2}ments|
        vat\s+number|hiring|legal|lawyer|sue|lawsuit|web\s*shop|online\s+(?:shop|store))\b
    |\b(?:return|cancel|change)\s+(?:the|my|an?)\s+(?:\w+\s+)?(?:order|purchase|delivery\s+address)\b
    |\bwarranty\s+(?:claim|repair|replacement)\b|\bwill\s+the\s+warranty\s+cover\b
    |\b(?:i|we)\s+(?:bought|ordered|paid)\b|\bdelete\s+my\s+account\b|\bprices?\b
    """,
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True)
class GateSignals:
    similarity: float  # the best passage's cosine similarity to the question
    coverage: float  # share of the question's content words the knowledge base uses at all
    span_match: float  # IDF-weighted share of the question's terms the chosen span and its heading hold

    @property
    def relevance(self) -> float:
        return self.similarity * self.coverage


def request_handoff(question: str) -> str | None:
    """The handoff reason the question itself gives (before any search), or None."""
    if ASKS_FOR_PERSON.search(question):
        return "customer_asked"
    if NEEDS_A_PERSON.search(question):
        return "needs_account_access"
    return None


def answerable(signals: GateSignals, min_relevance: float, min_span_match: float) -> bool:
    """The passages are close to the question and the span holds its key terms."""
    return signals.relevance >= min_relevance and signals.span_match >= min_span_match
