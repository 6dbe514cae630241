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
- ``channel``: a sentence that sends the customer elsewhere or states what the channel cannot do ("Please create
  a support ticket…", "DM us…", "We cannot assist with travel inquiries over social media.") is dropped: in the
  product the bot is the channel, and handing over to a person is its decision, not the model's.
- ``nothing_left``: a reply left with fewer than three words, or only pleasantries, is not a target: the
  conversation ends before that turn (or is dropped when no agent turn is left).

:class:`TemplateCap` then keeps at most ``cap`` near-identical replies (word-trigram Jaccard ≥ 0.6 with the first of
their kind), so that no brand's template dominates what the model learns (``template``); replies made only of
greetings, apologies and closers ("Hi there. Hope this helps.", "Hi there, we're sorry for the trouble. Let us know
if you have any questions.") count as one template: one epoch on them made "Hi there. Hope this helps." 7 of 64
generated replies. Pleasantries inside replies with content are capped too (``pleasantry``):
each class — apology, thanks, closer, offer to help (:func:`pleasantry`) — is kept in at most 5 % of the targets and
once per reply, else cut (a greeting before it stays). No single apology was frequent in the Twitter targets (the
most common, "sorry for the trouble", 5 of 363), but 174 of the 363 replies held one of these sentences (thanks 80,
closers 74, apologies 46, offers 19), and greedy decoding strings them together: "Hi there, we're sorry for the
trouble. We're here to help. Let us know if you have any questions." was 7 of 64 generated replies, and 34 of 64
said nothing else.
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
# Channel policy is a fact of one company's Twitter desk (module docstring, ``channel``). Five refusals and six
# support-ticket replies among 313 targets made 24 of 64 generated replies refuse or deflect ("We're unable to
# assist with car purchases.").
CHANNEL = re.compile(
    r"\bDMs?\b|\b(?:a|us|me) PM\b|(?i:\b(?:direct|private) messages?\b|\bsupport (?:ticket|request)s?\b|"
    r"\bphone support\b|\b(?:call|tweet) us\b|\bsend us a tweet\b|"
    r"\b(?:we|i)(?:'|’)?(?:re| are| am|m)? ?(?:can ?not|can(?:'|’)t|unable to|not able to) "
    r"(?:assist|help|support|discuss|provide|handle)\b)"
)
# A request for a secret: "Please let us know the username and password." (a tuned 135M model wrote it; real
# agents never ask for one). A manual's own step ("Share the Wi-Fi password with guests") is allowed when the
# passages hold it.
CREDENTIAL = re.compile(
    r"\b(?:send|share|tell|provide|give|reply with|let us know|DM)\b[^.!?\n]{0,40}?"
    r"\b(?:passwords?|passcodes?|(?-i:PINs?)|security codes?|CVV|CVC|verification codes?|one-time codes?|2FA codes?|"
    r"card numbers?)\b",
    re.IGNORECASE,
)
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
_AP = "(?:'|’)"
# A greeting that may open a sentence before a pleasantry: "Hi there, we're sorry for the trouble."
_GREETING_PREFIX = re.compile(r"^(?:hi|hello|hey|hiya|howdy|greetings|good (?:morning|afternoon|evening|day))"
                              r"(?:\s+there)?(?:\s*[,!.:;–—-]+\s*|\s+(?=\S)|\s*$)", re.IGNORECASE)
# Sentences that carry no content of their own (after a greeting): thanks, apologies, offers to help, "Hope this
# helps", "Let us know if you have any questions". One alternative per class (see _PLEASANTRY_CLASSES).
_PLEASANTRY_CLASSES: list[tuple[str, str]] = [
    ("apology", rf"(?:(?:we|i)(?:{_AP}re|{_AP}m| are| am) )?(?:so |very |really |truly )?sorry\b[^.!?]{{0,40}}|"
                r"(?:(?:my|our|sincere) )?apologies\b[^.!?]{0,40}|"
                r"(?:we|i) (?:do |sincerely )?apologi[sz]e\b[^.!?]{0,40}|"
                rf"(?:that|this)(?:{_AP}s| is) not (?:the experience|what) (?:we|you)[^.!?]{{0,40}}|"
                r"oh no\b[^.!?]{0,20}"),
    ("thanks", r"(?:thanks?|thank you|cheers)\b[^.!?]{0,40}"),
    ("closer", r"(?:i |we )?hope (?:this|that|it|these) (?:helps|clarifies|works)[^.!?]{0,20}|"
               r"(?:please )?(?:do )?(?:let us know(?= if| how| whether| when|[\s.!?,]*$)|keep (?:us|u) posted|"
               r"reach (?:back )?out|feel free|(?:just )?give us a shout)[^.!?]{0,50}|"
               r"if you (?:still )?(?:have|need) (?:any )?(?:more |other |further )?(?:questions|help|assistance|"
               r"anything)[^.!?]{0,40}"),
    ("offer", rf"(?:we(?:{_AP}re|{_AP}d|{_AP}ll| are| would| will) )?(?:always |more than |so )?(?:here|happy|glad|"
              r"love|like) to (?:help|assist)(?: you)?(?: further| out)?(?: with (?:this|that|it))?(?: today)?"
              rf"(?: in any way (?:we|i) can)?|(?:we(?:{_AP}ve| have) )?got you covered[^.!?]{{0,20}}|"
              rf"(?:we(?:{_AP}re| are) )?here for you|let{_AP}s see (?:if|what|how) we can (?:help|do)[^.!?]{{0,20}}"),
    ("other", r"(?:welcome|great|sure|ok(?:ay)?|no problem|no worries|yikes)\b[^.!?]{0,30}|[^\w]*"),
]
_PLEASANTRY_SENTENCE = [(name, re.compile(rf"^(?:{pattern})[.!?,]*$", re.IGNORECASE))
                        for name, pattern in _PLEASANTRY_CLASSES]
GENERIC_TEMPLATE = "(greetings, apologies and closers only)"


def pleasantry(sentence: str) -> str | None:
    """The class of a sentence that carries no content ("greeting", "apology", "thanks", "closer", "offer",
    "other"), or None when it says something. A greeting before it is ignored: "Hi there, we're sorry for the
    trouble." is an apology."""
    rest = _GREETING_PREFIX.sub("", sentence.strip(), count=1).strip()
    if not rest or not _WORD.search(rest.lower()):
        return "greeting" if rest != sentence.strip() else "other"
    return next((name for name, pattern in _PLEASANTRY_SENTENCE if pattern.match(rest)), None)


def is_generic(reply: str) -> bool:
    """True when every sentence of *reply* is a greeting, apology, thanks or closer ("Hi there, we're sorry for
    the trouble. Let us know if you have any questions.")."""
    return all(pleasantry(s) for s in sentences(reply))


def _strip_pleasantry(sentence: str) -> str:
    """What is left of a pleasantry sentence when it goes: its greeting ("Hi there, sorry!" → "Hi there.")."""
    greeting = _GREETING_PREFIX.match(sentence.strip())
    return greeting.group().strip(" ,;:–—-") + "." if greeting and greeting.group().strip(" ,;:–—-") else ""

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
    ("channel", CHANNEL),
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
    first reply by Jaccard ≥ *threshold* is that template. Replies of greetings and pleasantries only are one
    template. And each class of pleasantry (apology, thanks, closer, offer to help) opens or closes at most
    *pleasantry_share* of the targets (at least *cap*): past that the sentence is cut from the reply (its greeting
    stays), so that "Hi there, we're sorry for the trouble." does not open every reply the model writes. A class
    is also kept once per reply ("Thanks for reaching out. … Thanks!")."""

    cap: int = 3
    threshold: float = 0.6
    group_generic: bool = True  # replies of greetings, apologies and closers only are one template
    pleasantry_share: float = 0.05
    templates: list[tuple[frozenset[tuple[str, ...]], int]] = field(default_factory=list)
    pleasantries: Counter[str] = field(default_factory=Counter)  # class → admitted targets holding one
    admitted: int = 0

    def _key(self, reply: str) -> str:
        # "Hi there. Hope this helps." and "Hi there. Keep us posted." are one template
        return GENERIC_TEMPLATE if self.group_generic and is_generic(reply) else reply

    def template_of(self, reply: str) -> int | None:
        own = _shingles(self._key(reply))
        for index, (first, _) in enumerate(self.templates):
            if len(own & first) >= self.threshold * len(own | first):
                return index
        return None

    def shape(self, reply: str, rules: Counter[str] | None = None) -> str:
        """*reply* without the pleasantries whose class is over its share (counted as ``pleasantry`` in
        *rules*); a reply of pleasantries only is left whole (it is the generic template)."""
        parts = sentences(reply)
        if not self.group_generic or all(pleasantry(p) for p in parts):
            return reply
        allowed = max(self.cap, int(self.pleasantry_share * (self.admitted + 1)))
        kept: list[str] = []
        seen: set[str] = set()
        for part in parts:
            kind = pleasantry(part)
            if kind in (None, "greeting", "other") or (kind not in seen and self.pleasantries[kind] < allowed):
                seen.add(kind or "")
                kept.append(part)
                continue
            if rules is not None:
                rules["pleasantry"] += 1
            if not kept and (greeting := _strip_pleasantry(part)):
                kept.append(greeting)
        return " ".join(kept)

    def admit(self, reply: str) -> bool:
        """True when *reply* may be a target (and counts it); False when its template is at the cap."""
        index = self.template_of(reply)
        if index is None:
            self.templates.append((_shingles(self._key(reply)), 1))
        else:
            first, count = self.templates[index]
            if count >= self.cap:
                return False
            self.templates[index] = (first, count + 1)
        self.admitted += 1
        self.pleasantries.update({kind for p in sentences(reply) if (kind := pleasantry(p))} - {"greeting", "other"})
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
    (kind, the text) for each link, e-mail address, phone number, price, order number, @handle, placeholder,
    request for a password or code (``credential``) and person name. A model may repeat what the passages say;
    it may not add any of these."""
    lowered = allowed.lower()
    digits = _DIGITS.sub("", allowed)
    found: list[tuple[str, str]] = []
    for kind, pattern in (("link", URL), ("email", EMAIL), ("price", PRICE), ("order_number", ORDER_NUMBER),
                          ("handle", HANDLE), ("placeholder", PLACEHOLDER), ("credential", CREDENTIAL)):
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
    placeholder, handle, name, price, order_number, credential."""
    return {kind for kind, _ in leaks(reply)}
