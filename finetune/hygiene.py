"""Checks on redacted conversations before they become training examples: turn shape, canned
auto-replies, and a de-duplication key."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

from finetune.conversation import Turn

# Sentences that only redirect or acknowledge ("We've sent you a DM", "Check your inbox"): a reply made of
# these and pleasantries teaches no support tone, only the canned line.
_CANNED = re.compile(
    r"\b(?:we|i)(?:'ve|’ve| have)? (?:just )?(?:sent|replied|responded|followed up|reached out|messaged)\b"
    r".{0,40}\b(?:dms?|direct messages?|pms?|private messages?|e-?mail|inbox)\b"
    r"|\b(?:check|see) (?:your|ur) (?:dms?|direct messages?|inbox|e-?mail|private messages?)\b"
    r"|\bautomated (?:message|reply|response)\b|\bout of (?:the )?office\b"
    r"|\b(?:we|i)(?:'ve|’ve| have) received your (?:message|request|ticket|e-?mail|tweet)\b"
    r"|\b(?:we|i)(?:'ll|’ll| will) (?:get back to you|be in touch|reply|respond)\b"
    r"|\b(?:we|i)(?:'re|’re| are) (?:looking into it|on it)\b",
    re.IGNORECASE,
)
_PLEASANTRY = re.compile(
    r"^(?:(?:hi|hello|hey|thanks?|thank you|cheers|sorry|welcome|great|sure|ok(?:ay)?)\b[^.!?]{0,40}"
    r"|[^\w]*|<\w+>)[.!?]*$",
    re.IGNORECASE,
)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_WORDS = re.compile(r"<\w+>|[^\W_]+")  # placeholders and words; punctuation, emoji and spacing do not count


def is_auto_reply(text: str) -> bool:
    """True when *text* is nothing but canned redirect/acknowledgement sentences and pleasantries."""
    sentences = [s.strip() for s in _SENTENCES.split(text) if s.strip()]
    canned = [bool(_CANNED.search(s)) for s in sentences]
    return any(canned) and all(c or _PLEASANTRY.match(s) for s, c in zip(sentences, canned, strict=True))


def tidy_turns(turns: Sequence[Turn]) -> list[Turn]:
    """Drop empty turns, merge neighbours of the same role (many chat templates require alternation), drop
    agent turns before the first customer turn (the bot never opens) and customer turns after the last
    agent turn (nothing answers them, so nothing is learnt from them)."""
    merged: list[Turn] = []
    for turn in turns:
        if not turn.text.strip():
            continue
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, f"{merged[-1].text}\n{turn.text}")
        else:
            merged.append(turn)
    while merged and merged[0].role == "agent":
        merged.pop(0)
    while merged and merged[-1].role == "customer":
        merged.pop()
    return merged


def dedup_key(turns: Sequence[Turn]) -> str:
    """Equal for conversations that differ only in case, punctuation, spacing, digits or accents."""
    lines = []
    for turn in turns:
        text = unicodedata.normalize("NFKD", turn.text.lower())
        text = "".join(c for c in text if not unicodedata.combining(c))
        text = re.sub(r"\d+", "0", text)
        lines.append(turn.role + ":" + " ".join(_WORDS.findall(text)))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
