"""Training targets that teach tone, not facts: what an agent reply may keep before the model learns from it.

A 135M model learns what it sees most: on real support replies that is links (530 of 584 replies hold one),
one brand's templates and agents' names, which it then writes for every company. So each agent turn (after
clean-up and PII redaction) is rewritten sentence by sentence, and every change is counted by rule:

- ``name``: a greeting to a named person becomes a neutral one ("Hi <NAME>," → "Hi there,"), a vocative is
  removed ("Sounds good, <NAME>." → "Sounds good."); any other sentence with a name is dropped.
- ``link``, ``contact``, ``placeholder``, ``handle``, ``price``, ``order_number``: a sentence holding a URL
  (raw or ``<URL>``), an e-mail address or phone number, another placeholder (``<ID>``, ``<ADDRESS>``…), an
  @handle, a price or an order number is dropped whole, with the "here:" that led to it; these are facts of
  one company and one customer, and the model should never write them.
- ``thread_marker``: "1/2", "(2/2)" are removed.
- ``nothing_left``: a reply left with fewer than three words, or only pleasantries, is not a target: the
  conversation ends before that turn (or is dropped when no agent turn is left).

:class:`TemplateCap` then keeps at most ``cap`` near-identical replies (word-trigram Jaccard ≥ 0.6 with
the first of their kind), so that no brand's template dominates what the model learns (``template``); replies
made only of greetings, apologies and closers ("Hi there. Hope this helps.") count as one template: one epoch
on them made "Hi there. Hope this helps." 7 of 64 generated replies.
The generated-reply checks of :mod:`finetune.evaluate` use the same patterns (:func:`reply_flags`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from finetune.conversation import Turn

PLACEHOLDER = re.compile(r"<(?:[A-Z_]{2,12})>")
URL = re.compile(
    r"\bhttps?:\s?//\S+|\bwww\.\S+|\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|tv|be|gg|co|me|ly|us|uk|de|fr|ca|au|app)"
    r"(?:/\S*)?(?=[\s.,;:!?)]|$)",
    re.IGNORECASE,
)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
PHONE = re.compile(r"(?<![\w/])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{3})[\s.-]?\d{3}[\s.-]?\d{3,4}(?![\w/])|"
                   r"\b1-8\d\d-\w{3}-\w{4}\b")
HANDLE = re.compile(r"(?<![\w@./])@\w{2,30}\b")
PRICE = re.compile(r"[$€£¥]\s?\d|\b\d+(?:[.,]\d\d)?\s?(?:USD|EUR|GBP|dollars?|euros?|pounds)\b", re.IGNORECASE)
ORDER_NUMBER = re.compile(r"(?<![\w&])#\d{3,}|\b(?:order|case|ticket|reference|ref)\s*(?:number|no\.?|#)?\s*:?\s*"
                          r"#?\d[\d-]{3,}", re.IGNORECASE)
_THREAD_MARKER = re.compile(r"\(?\b\d/\d\b\)?")
_GREETING_NAME = re.compile(
    r"\b(Hi|Hello|Hey|Dear|Hiya|Howdy|Thanks|Thank you|Sorry|Welcome|Cheers)(\s+there)?\s*,?\s*<NAME>", re.IGNORECASE
)
_VOCATIVE_NAME = re.compile(r"\s*[,–—-]?\s*<NAME>\s*(?=[,.!?]|$)|^<NAME>\s*[,–—-]\s*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+|(?<=\S)(?<=[^\s.!?])\s+(?=(?:https?://|www\.|<URL>))|"
                       r"(?:(?<=\S/)|(?<=<URL>)|(?<=\.html))\s+(?=[A-Z])")
_LEAD_IN = re.compile(r"[^.!?]$|(?:here|below|at|via|on|visit|following|link|article|page|site|form|steps|guide)"
                      r"\s*:?\s*$|:\s*$", re.IGNORECASE)
_PLEASANTRY = re.compile(
    r"^(?:(?:hi|hello|hey|thanks?|thank you|cheers|sorry|welcome|great|sure|ok(?:ay)?)\b[^.!?]{0,30}|[^\w]*)[.!?]*$",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9']+")
# Sentences that carry no content of their own: greetings, thanks, apologies, "Hope this helps", "Keep us posted".
_GENERIC = re.compile(
    r"^(?:(?:hi|hello|hey|thanks?|thank you|cheers|sorry|welcome|great|sure|ok(?:ay)?)\b[^.!?]{0,30}|[^\w]*|"
    r"(?:we(?:'re|’re| are) )?(?:so )?sorry (?:to hear|for|about)[^.!?]{0,40}|hope (?:this|that) (?:helps|clarifies)"
    r"[^.!?]{0,20}|(?:please )?(?:let us know|keep (?:us|u) posted|reach (?:back )?out)[^.!?]{0,40}|"
    r"(?:we(?:'re|’re| are|’d|'d| would) )?(?:here|happy|glad|love) to help[^.!?]{0,20}|here to (?:help|assist)"
    r"[^.!?]{0,20})[.!?]*$",
    re.IGNORECASE,
)
GENERIC_TEMPLATE = "(greetings, apologies and closers only)"


def is_generic(reply: str) -> bool:
    """True when every sentence of *reply* is a greeting, apology or closer ("Hi there. Hope this helps.")."""
    return all(_GENERIC.match(s) for s in sentences(reply))

# Rule → the pattern that drops a sentence, in the order they are checked (the first that matches is counted).
_DROP_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("link", re.compile(rf"{URL.pattern}|<URL>", re.IGNORECASE)),
    ("contact", re.compile(rf"{EMAIL.pattern}|{PHONE.pattern}|<EMAIL>|<PHONE>")),
    ("name", re.compile(r"<NAME>")),
    ("placeholder", PLACEHOLDER),
    ("handle", HANDLE),
    ("price", PRICE),
    ("order_number", ORDER_NUMBER),
    # A sentence that points at a link it no longer has: "Please see the following link for details."
    ("link", re.compile(r"\b(?:link|links|url|the following|(?:link|page|steps|article) below|this (?:article|page|"
                        r"form)|these (?:instructions|steps|articles|tips))\b|\bhere[.!?:]?$", re.IGNORECASE)),
]


def _neutral_greeting(match: re.Match[str]) -> str:
    word = match.group(1)
    return f"{word} there" if word.lower() in ("hi", "hello", "hey", "hiya", "howdy", "dear") else word


def sentences(text: str) -> list[str]:
    """*text* split into sentences; a link also ends one ("…here: https://x.y/z Hope this helps!")."""
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def rewrite_reply(text: str, rules: Counter[str]) -> str | None:
    """The agent reply as a training target, or None when nothing worth learning is left; *rules* counts
    each change by rule name."""
    text, n = _THREAD_MARKER.subn("", text)
    if n:
        rules["thread_marker"] += n
    text, n = _GREETING_NAME.subn(_neutral_greeting, text)
    text, m = _VOCATIVE_NAME.subn("", text)
    if n + m:
        rules["name"] += n + m
    text = URL.sub("<URL>", text)  # a link also ends a sentence: "…here: https://x.y/1 Hope this helps!"
    kept: list[str] = []
    for sentence in sentences(text):
        rule = next((name for name, pattern in _DROP_RULES if pattern.search(sentence)), None)
        if rule is None:
            kept.append(sentence)
            continue
        rules[rule] += 1
        if kept and _LEAD_IN.search(kept[-1]):
            kept.pop()  # "Here's how:" led to the dropped link
    reply = " ".join(kept).strip()
    words = _WORD.findall(reply.lower())
    if len(words) < 3 or all(_PLEASANTRY.match(s) for s in sentences(reply)):
        rules["nothing_left"] += 1
        return None
    return reply


def rewrite_turns(turns: list[Turn], rules: Counter[str]) -> list[Turn]:
    """The conversation up to (not including) the first agent turn that leaves no target; agent turns
    rewritten. Customer turns are context and stay as redacted."""
    out: list[Turn] = []
    for turn in turns:
        if turn.role != "agent":
            out.append(turn)
            continue
        reply = rewrite_reply(turn.text, rules)
        if reply is None:
            break
        out.append(Turn("agent", reply))
    return out


def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = _WORD.findall(re.sub(r"\d+", "0", text.lower()))
    return frozenset(zip(words, words[1:], words[2:], strict=False)) or frozenset({tuple(words)})


@dataclass
class TemplateCap:
    """Keeps at most *cap* near-identical replies: a reply whose word trigrams overlap a template's
    first reply by Jaccard ≥ *threshold* is that template."""

    cap: int = 3
    threshold: float = 0.6
    group_generic: bool = True  # replies of greetings, apologies and closers only are one template
    templates: list[tuple[frozenset[tuple[str, ...]], int]] = field(default_factory=list)

    def _key(self, reply: str) -> str:
        # "Hi there. Hope this helps." and "Hi there. Keep us posted." are one template
        return GENERIC_TEMPLATE if self.group_generic and is_generic(reply) else reply

    def template_of(self, reply: str) -> int | None:
        own = _shingles(self._key(reply))
        for index, (first, _) in enumerate(self.templates):
            if len(own & first) >= self.threshold * len(own | first):
                return index
        return None

    def admit(self, reply: str) -> bool:
        """True when *reply* may be a target (and counts it); False when its template is at the cap."""
        index = self.template_of(reply)
        if index is None:
            self.templates.append((_shingles(self._key(reply)), 1))
            return True
        first, count = self.templates[index]
        if count >= self.cap:
            return False
        self.templates[index] = (first, count + 1)
        return True


def template_share(replies: list[str], threshold: float = 0.6) -> tuple[float, str]:
    """The share of *replies* that belong to the most frequent near-identical template, and its first reply
    (generic replies are not grouped here: :func:`is_generic` counts them)."""
    if not replies:
        return 0.0, ""
    groups = TemplateCap(cap=len(replies) + 1, threshold=threshold, group_generic=False)
    counts: Counter[int] = Counter()
    firsts: dict[int, str] = {}
    for reply in replies:
        index = groups.template_of(reply)
        groups.admit(reply)
        index = len(groups.templates) - 1 if index is None else index
        counts[index] += 1
        firsts.setdefault(index, reply)
    top, count = counts.most_common(1)[0]
    return count / len(replies), firsts[top]


_GREETING_ANY_NAME = re.compile(
    r"\b(?:Hi|Hello|Hey|Dear|Hiya|Thanks|Thank you|Cheers)\s*,?\s+(?P<name>[A-Z][a-z]+)(?=\s*[,.!?:;–—-]|\s*$)"
)
_DIGITS = re.compile(r"\D")


def names_in(text: str) -> list[str]:
    """Person names where replies put them: greetings, sign-offs, vocatives (:class:`finetune.pii_rules.
    NameRecognizer`), and any capitalised word a greeting addresses ("Hi Steffi,")."""
    from finetune.pii_rules import _NOT_NAMES, NameRecognizer

    found = [text[r.start : r.end] for r in NameRecognizer().analyze(text, ["PERSON"])]
    found += [m["name"] for m in _GREETING_ANY_NAME.finditer(text) if m["name"].lower() not in _NOT_NAMES]
    return list(dict.fromkeys(n for n in found if not any(n != o and n in o for o in found)))


def leaks(text: str, allowed: str = "") -> list[tuple[str, str]]:
    """What *text* (model-written) holds that *allowed* (the retrieved passages and the question) does not:
    (kind, the text) for each link, e-mail address, phone number, price, order number, @handle, placeholder
    and person name. A model may repeat what the passages say; it may not add any of these."""
    lowered = allowed.lower()
    digits = _DIGITS.sub("", allowed)
    found: list[tuple[str, str]] = []
    for kind, pattern in (("link", URL), ("email", EMAIL), ("price", PRICE), ("order_number", ORDER_NUMBER),
                          ("handle", HANDLE), ("placeholder", PLACEHOLDER)):
        for m in pattern.finditer(text):
            value = m.group().rstrip(".,;:!?)")
            if value.lower() not in lowered:
                found.append((kind, value))
    for m in PHONE.finditer(text):
        if _DIGITS.sub("", m.group()) not in digits:
            found.append(("phone", m.group()))
    for name in names_in(text):
        bare = name.strip("~^*_/|–—- ").split()[0] if name.strip("~^*_/|–—- ") else name
        if not re.search(rf"\b{re.escape(bare)}\b", allowed):
            found.append(("name", name))
    return found


def reply_flags(reply: str) -> set[str]:
    """What a generated reply holds that it must not (no passages allow anything): link, email, phone,
    placeholder, handle, name, price, order_number."""
    return {kind for kind, _ in leaks(reply)}
