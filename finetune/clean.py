"""Text clean-up of ticket turns before redaction: transport artefacts that a chat bot must not learn.

- Leading @mentions are Twitter addressing ("@TeamYouTube Hi…", "@customer Thanks…"), not words of the
  message: a bot trained on them would open every answer with a handle.
- Agent sign-offs ("^Kristy", "*MS", "-Sofia", "~ Olivia", "~Heather B.", "/EX", "…clarify. Jason" at the end,
  before a thread marker "2/2" too) name employees; the bot is none of them (:func:`finetune.pii_rules.strip_sign_off`).
- Wayback-machine wrappers (web.archive.org/web/<time>/<url>) are an artefact of archived datasets: the
  agent linked the inner URL.
- Chat-template control sequences (<|im_end|>, [INST], …) in customer text would otherwise be read as real
  special tokens and fake turns in the training data (the same list as ``bot.prompt``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from finetune.conversation import Turn
from finetune.pii_rules import strip_sign_off
from supportbot.chat_control import CHAT_CONTROL

_ADDRESSING = re.compile(r"^(?:\s*\.?@\w{1,30}[,:]?)+\s*")
_ARCHIVE = re.compile(r"https?://web\.archive\.org/web/\d{1,14}[a-z_]{0,4}/(?=https?://)", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\s*\n\s*")


@dataclass
class CleanStats:
    """How many of each artefact were removed (for the dataset report)."""

    addressing: int = 0
    signatures: int = 0
    archive_links: int = 0
    control_sequences: int = 0


def normalise_space(text: str) -> str:
    text = unicodedata.normalize("NFC", _INVISIBLE.sub("", text)).replace("\u00a0", " ")
    return _BLANK_LINES.sub("\n", _SPACES.sub(" ", text)).strip()


def clean_turn(turn: Turn, stats: CleanStats) -> Turn:
    text = normalise_space(turn.text)
    text, n = CHAT_CONTROL.subn(" ", text)
    stats.control_sequences += n
    text, n = _ARCHIVE.subn("", text)
    stats.archive_links += n
    stripped = _ADDRESSING.sub("", text)
    stats.addressing += stripped != text
    text = stripped
    if turn.role == "agent":
        text, n = strip_sign_off(text)
        stats.signatures += n
    return Turn(turn.role, normalise_space(text))
