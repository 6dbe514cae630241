"""Follow-ups without a model: is the new message a question of its own, or does it lean on the
previous one? A 135M model rewrites follow-ups unreliably, so this is decided by its words.

- A message with enough words of its own ("How do I update the firmware?") is self-contained and is
  never glued to the previous question, even when it holds a pronoun.
- A message that refers back ("and how long does that take?", "what about the guest one?") with
  few words of its own takes its topic from the last self-contained question of the conversation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
_REFERS_BACK = re.compile(
    r"\b(it|its|that|this|these|those|they|them|their|there|one|ones|same|also|too|else|instead|then|"
    r"what about|how about|and)\b",
    re.I,
)
# Question scaffolding and everyday words: they say what is asked, not what it is about.
_SCAFFOLD = frozenset(
    """
    a an the and or but to of in on for with at by from as about into after before than then so if
    i me my mine you your we us our it its this that these those they them their there here what which who
    whom whose when where why how is are was were be been being do does did done have has had can could
    will would should shall may might must not no yes please thanks thank ok okay also too else instead
    same one ones just still again more less much many long take takes took time get got make use want
    need know tell happen happens way any some all other another very really itself themselves
    """.split()
)
# At most this many words of its own and a word that refers back: a follow-up.
_MAX_OWN_WORDS = 3


def topic_words(text: str) -> list[str]:
    """The words of *text* that say what it is about (question scaffolding left out)."""
    return [w for w in _WORD.findall(text.lower()) if w not in _SCAFFOLD and len(w) > 1]


def is_follow_up(question: str) -> bool:
    """True when *question* leans on an earlier one for its topic."""
    own = topic_words(question)
    if not own:
        return True  # "and how long does that take?", "why?"
    return len(own) <= _MAX_OWN_WORDS and bool(_REFERS_BACK.search(question))


def standalone_question(question: str, previous_questions: Sequence[str]) -> str:
    """The question to search with: *question* itself, or, for a follow-up, the last self-contained
    earlier question followed by it (the follow-ups in between keep their words too)."""
    if not previous_questions or not is_follow_up(question):
        return question
    chain = [question]
    for earlier in reversed(previous_questions):
        chain.append(earlier)
        if not is_follow_up(earlier):
            break
    return " ".join(reversed(chain))
