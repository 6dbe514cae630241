"""Presidio recognizers for what its pattern recognizers miss in support tickets (no NER model needed).

Links: a link is kept only when it looks like a help-centre article (host support./help./community./…, or a
/help/, /answer/, /articles/, /kb/ path) and carries no profile segment (/user/, /channel/, /profile/,
/status/, /account/…) or identity parameter (email=, user=, token=…): agents link articles, and those
are not personal; their tracking parameters (visit ids, analytics client ids) are removed. Everything else
becomes <URL>: social and file-sharing links point at people, and an unknown link can carry an ID
(over-redacting a brand page costs little).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import regex
import tldextract
from presidio_analyzer import LocalRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import EmailRecognizer

from finetune.names import is_first_name

CASE_SENSITIVE = regex.DOTALL | regex.MULTILINE

SOCIAL_HOSTS = frozenset(
    """twitter.com x.com t.co facebook.com fb.com fb.me messenger.com m.me instagram.com tiktok.com linkedin.com
    youtube.com youtu.be twitch.tv reddit.com snapchat.com pinterest.com tumblr.com discord.gg discord.com t.me
    wa.me whatsapp.com github.com gitlab.com steamcommunity.com soundcloud.com patreon.com paypal.me venmo.com
    cash.app vk.com flickr.com imgur.com dropbox.com drive.google.com docs.google.com photos.google.com
    onedrive.live.com 1drv.ms icloud.com wetransfer.com box.com""".split()
)
PROFILE_SEGMENTS = frozenset("user users usr channel profile profiles member members people status statuses".split())
# Help centres have "accounts" or "orders" topics; elsewhere these segments lead to someone's records.
RECORD_SEGMENTS = frozenset("account accounts order orders invoice invoices".split())
IDENTITY_PARAMS = frozenset(
    "email mail user userid user_id username uid token auth session sessionid sid account accountid "
    "order orderid phone name".split()
)
TRACKING_PARAMS = frozenset(
    "_ga _gl visit_id qid sr linkid ref icid cid zcid fbclid gclid dclid msclkid clk s_cid cmp jp_cmp igshid si "
    "feature rd".split()
)
SUPPORT_LABELS = frozenset("support help helpx community communities answers docs kb forums discussions faq".split())
SUPPORT_SEGMENTS = frozenset("help support answer answers article articles kb faq faqs hc docs guide guides".split())

_URL = regex.compile(
    r"(?:\bhttps?:\s?//|\bwww\.)[^\s<>\"'`]+"
    r"|\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|tv|be|gg|co|me|ly|us|uk|de|fr|ca|au|in|app|dev|info|biz)/[^\s<>\"'`]*",
    regex.IGNORECASE,
)

_HOST_PREFIX = regex.compile(r"^(?:www\d?|m|mobile)\.")


def is_article_link(url: str) -> bool:
    """True for a help-centre article link (kept as is); False for anything that may be personal."""
    parts = urlsplit(url.replace(" ", "") if "://" in url else "https://" + url)
    host = _HOST_PREFIX.sub("", (parts.hostname or "").lower())
    segments = [s.lower() for s in parts.path.split("/") if s]
    if any(s in PROFILE_SEGMENTS or s.startswith(("@", "~")) for s in segments):
        return False
    if any(key.lower() in IDENTITY_PARAMS for key, _ in parse_qsl(parts.query)):
        return False
    if host.split(".")[0] in SUPPORT_LABELS:
        return True
    if any(host == s or host.endswith("." + s) for s in SOCIAL_HOSTS) or RECORD_SEGMENTS.intersection(segments):
        return False
    return any(s in SUPPORT_SEGMENTS for s in segments)


def strip_tracking(url: str) -> str:
    """An article link without its tracking parameters (analytics client ids, visit ids, campaign tags)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/:,")))


def _is_tracking(key: str) -> bool:
    key = key.lower()
    return key in TRACKING_PARAMS or key.startswith(("utm_", "mc_", "_hs"))


class LinkRecognizer(LocalRecognizer):
    """URL for links that may identify someone, SAFE_URL for article links (kept, and shielding the IDs in them)."""

    def __init__(self) -> None:
        super().__init__(supported_entities=["URL", "SAFE_URL"], name="SupportbotLinkRecognizer")

    def load(self) -> None:  # nothing to load
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: object = None) -> list[RecognizerResult]:
        results = []
        for match in _URL.finditer(text):
            url = match.group().rstrip(".,;:!?)]}'\"")
            kind = "SAFE_URL" if is_article_link(url) else "URL"
            results.append(RecognizerResult(kind, match.start(), match.start() + len(url), 0.9))
        return results


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer validates the domain with tldextract, which downloads the public suffix
    list on first use (and logs tracebacks offline): use the list snapshot that tldextract ships."""

    _extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    def validate_result(self, pattern_text: str) -> bool:
        return self._extract(pattern_text).fqdn != ""


class _Recognizer(PatternRecognizer):
    """A pattern recognizer with an optional set of matches that are never PII (case-insensitive)."""

    def __init__(self, entity: str, patterns: list[Pattern], *, not_pii: Iterable[str] = (), **kwargs: object):
        super().__init__(supported_entity=entity, patterns=patterns, name=f"Supportbot{entity}Recognizer", **kwargs)
        self._not_pii = frozenset(w.lower() for w in not_pii)

    def invalidate_result(self, pattern_text: str) -> bool:
        return any(word in self._not_pii for word in pattern_text.lower().split())


class PhoneFallbackRecognizer(_Recognizer):
    """Numbers that libphonenumber rejects as invalid (e.g. 555 numbers) but are shaped like phone numbers."""

    def __init__(self) -> None:
        pattern = r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?![\w-])"
        super().__init__("PHONE_NUMBER", [Pattern("phone shape", pattern, 0.5)], context=["phone", "call", "number"])

    def validate_result(self, pattern_text: str) -> bool:
        return 10 <= sum(c.isdigit() for c in pattern_text) <= 15


_USERNAME_CUES = (
    r"gamer\s?tag|gt|psn(?:\s+(?:id|name))?|user\s?name|user\s?id|(?:xbox|epic|activision|steam|twitch|discord|"
    r"ea|ubisoft|battle\.?net|riot|nintendo)\s+(?:id|name|username|account)|social\s+club(?:\s+name)?|ign|"
    r"account\s+name|handle"
)
_ACCOUNT_CUES = (
    r"order|account|acct|case|ticket|ref|reference|confirmation|booking|tracking|membership|member|customer|"
    r"invoice|transaction|claim|serial|imei|policy|subscription|reservation|confirmation\s+code"
)
_NOT_A_VALUE = "is not a the an my and or but still was has had it this that number name id tag account".split()

# Words a greeting or a trailing vocative puts where a name would be, that are not names.
_NOT_NAMES = """there all everyone team guys folks friend friends sir madam again today tomorrow yesterday
    please thanks thank sorry yes no ok okay sure great cool nice love regards best hope done welcome cheers
    morning afternoon evening night weekend monday tuesday wednesday thursday friday saturday sunday support
    android windows mac iphone ipad ios chrome firefox safari xbox playstation steam google apple youtube twitter
    spotify amazon microsoft adobe english everybody anyone someone mate customer service unfortunately
    however""".split()


_THREAD = r"(?:[^\S\n]*\(?\d/\d\)?)?"  # a thread marker after a sign-off: "/KD 2/2"
_NAME = r"[A-Z][a-z]+(?:['’]?[A-Z][a-z]+)?"  # "Olivia", "O'Neil", "CharlesOpacki"
_NAME_WITH_INITIAL = rf"{_NAME}(?:\s[A-Z]\.?)?"
# "Hi Tucker I notice…": a greeting, then a capitalised word that is a known given name, whatever follows.
_GREETING = regex.compile(
    r"\b(?i:Hi|Hello|Hey|Dear|Hiya|Howdy|Thanks|Thank you|Sorry|Welcome|Cheers|Morning|Good (?:morning|afternoon|"
    rf"evening))(?i:\s+there)?\s*,?\s+(?P<name>{_NAME})(?P<more>\s[A-Z][a-z]+|\s[A-Z]\.)?"
)
# Agent sign-offs at the end of a line: "~ Olivia", "~Heather B.", "- Rene", "_Rjay", "/EX", "^JK", "–Jeh".
_SIGN_OFF = regex.compile(
    rf"(?:^|(?<=[\s.!?>)]))(?P<mark>[~^*_/|]|[-–—])\s?(?P<name>{_NAME_WITH_INITIAL}|[A-Z]{{1,3}}|[A-Z]{{1,2}}[a-z][A-Za-z]{{1,20}})[.!]?{_THREAD}[^\S\n]*$",
    regex.MULTILINE,
)
# A bare sign-off after the last sentence: "…to clarify. Jason", "…for updates. Trinity", "…assistance: <URL> HRB".
_BARE_SIGN_OFF = regex.compile(
    rf"(?<=[.!?>:]\s+)(?P<name>{_NAME_WITH_INITIAL}|[A-Z]{{2,3}})[.!]?{_THREAD}[^\S\n]*$",
    regex.MULTILINE,
)
# A vocative without a comma ("Thanks for the tweet Janet.", "…on this, Eric and please know…") or a reply that
# opens with one ("Edgar - sorry…").
_VOCATIVE = regex.compile(
    rf"(?<=\b[a-z]+,?\s)(?P<name>{_NAME})(?=[.!?,]|\s*$|\s(?:and|but|we|please|thanks?)\b)"
    rf"|^(?P<name>{_NAME})(?=\s*[,!–—-]\s)",
    regex.MULTILINE,
)
# "our CEO Charlie Scharf": a known given name and a capitalised word after it.
_FULL_NAME = regex.compile(r"\b(?P<name>[A-Z][a-z]+)\s(?P<surname>[A-Z][a-z]{2,}(?:-[A-Z][a-z]+)?)\b")
# Closing words that end a reply on their own ("…let us know. Thanks"): never a bare sign-off.
_CLOSERS = frozenset("thanks thank cheers regards best enjoy welcome again soon everyone all".split())
_NOT_INITIALS = frozenset("OK FAQ PS PC TV ID DM DMS IOS OS US UK EU AM PM ET PT CT GMT UTC USA PIN ATM".split())


_THREAD_MARKER = regex.compile(r"[^\S\n]*\(?\b\d/\d\)?[^\S\n]*$")


def _sign_offs(text: str) -> list[tuple[int, int, int]]:
    """Sign-offs (mark and name, or a bare name or initials after the last sentence of a line): start, end of
    the name, end of the line's text."""
    spans = []
    for m in _SIGN_OFF.finditer(text):
        name = m["name"]
        word = name.split()[0]
        after_sentence = text[max(0, m.start("mark") - 2) : m.start("mark")].rstrip()[-1:] in (".", "!", "?")
        if name.upper() == name:  # initials: "/EX", "-AB"
            ok = name not in _NOT_INITIALS
        elif m["mark"] in "-–—" and not after_sentence:  # a dash also joins words: only names and "Name B."
            ok = is_first_name(word) or " " in name
        else:  # "~ Olivia", "^NKush", "Thank you. -Karla"
            ok = word.lower() not in _NOT_NAMES
        if ok:
            spans.append((m.start("mark"), m.end("name"), m.end()))
    for m in _BARE_SIGN_OFF.finditer(text):
        name = m["name"]
        if (name.upper() == name and name not in _NOT_INITIALS) or is_first_name(name.split()[0]):
            spans.append((m.start("name"), m.end("name"), m.end()))
    return spans


def strip_sign_off(text: str) -> tuple[str, int]:
    """*text* without its trailing sign-offs and thread markers ("… /KD 1/2"); how many were removed."""
    removed = 0
    while True:
        stripped = _THREAD_MARKER.sub("", text.rstrip())
        ends = [start for start, _, end in _sign_offs(stripped) if end >= len(stripped.rstrip())]
        if ends:
            stripped = stripped[: min(ends)].rstrip()
            removed += 1
        if stripped == text.rstrip():
            return stripped, removed
        text = stripped


class NameRecognizer(LocalRecognizer):
    """Person names where support text puts them, without NER: after greetings (a known given name, or any
    capitalised word before punctuation — presidio pattern below), agent sign-offs and initials at the end of a
    line, bare sign-offs after the last sentence, and vocatives. Measured on real Twitter support replies."""

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="SupportbotNameRecognizer")

    def load(self) -> None:  # nothing to load
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: object = None) -> list[RecognizerResult]:
        results = []
        for m in _GREETING.finditer(text):
            if is_first_name(m["name"]) and m["name"].lower() not in _NOT_NAMES:
                end = m.end("more") if m["more"] and (is_first_name(m["more"].strip()) or "." in m["more"]) \
                    else m.end("name")
                results.append(RecognizerResult("PERSON", m.start("name"), end, 0.7))
        for start, end, _ in _sign_offs(text):
            results.append(RecognizerResult("PERSON", start, end, 0.7))
        for m in _FULL_NAME.finditer(text):
            if is_first_name(m["name"]) and m["surname"].lower() not in _NOT_NAMES:
                results.append(RecognizerResult("PERSON", m.start(), m.end(), 0.5))
        for m in _VOCATIVE.finditer(text):
            if is_first_name(m["name"]):
                results.append(RecognizerResult("PERSON", m.start("name"), m.end("name"), 0.6))
        return results


def supportbot_recognizers() -> list[LocalRecognizer]:
    """The project's recognizers, added to the chosen presidio ones in :mod:`finetune.redact`."""
    return [
        LinkRecognizer(),
        OfflineEmailRecognizer(),
        PhoneFallbackRecognizer(),
        NameRecognizer(),
        _Recognizer("HANDLE", [Pattern("@handle", r"(?<![\w@./])@\w{1,30}\b", 0.8)]),
        _Recognizer(  # "my gamer tag is phantomstrike50", "PSN ID: x_y"
            "HANDLE",
            [  # after "is"/":"/"=" any word; right after the cue only one with a digit or "_" ("PSN cards")
                Pattern("username cue", rf"(?<=\b(?:{_USERNAME_CUES})\b\s*(?:is|:|=|-)\s*)\b[\w.#-]*\w", 0.7),
                Pattern("username cue, bare", rf"(?<=\b(?:{_USERNAME_CUES})\b\s*)\b(?=[\w.#-]*[\d_])[\w.#-]*\w", 0.7),
            ],
            not_pii=_NOT_A_VALUE,
        ),
        _Recognizer(  # "order #112-3456789", "case number: 0123456", "#1234567"
            "ACCOUNT_ID",
            [
                Pattern(
                    "account cue",
                    rf"(?<=\b(?:{_ACCOUNT_CUES})\b(?:\s+(?:no\.?|num(?:ber)?|id|code|#))?\s*(?:#|:|is|=)?\s*)"
                    r"#?(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{4,}\b",
                    0.7,
                ),
                Pattern("#number", r"(?<![\w&])#\d{5,}\b", 0.6),
            ],
        ),
        _Recognizer(
            "LONG_ID",
            [
                Pattern("digits", r"(?<![\w.])\d(?:-?\d){8,}(?![\w-])", 0.5),  # 9+ digits, maybe hyphenated
                Pattern("mixed token", r"\b(?=(?:[A-Za-z_-]*\d){2})[A-Za-z0-9_-]{16,}\b", 0.5),
                Pattern("key groups", r"\b(?=[A-Z0-9-]*\d)[A-Z0-9]{4,6}(?:-[A-Z0-9]{4,6}){3,}\b", 0.5),
            ],
        ),
        _Recognizer(
            "ADDRESS",
            [
                Pattern(
                    "street",
                    r"\b\d{1,6}[A-Za-z]?\s+(?:[NSEW]\.?\s+)?(?:[A-Z0-9][\w'.-]*\s+){0,4}"
                    r"(?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|"
                    r"terrace|ter|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|trl|crescent|close|plaza)\b\.?"
                    r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?"
                    r"(?:\s*,?\s*(?i:apt|apartment|suite|ste|unit|fl|floor|#)\.?\s*[A-Za-z0-9-]+)?"
                    r"(?:\s*,\s*[A-Z][A-Za-z]+(?:\s+[A-Z][A-Za-z]+){0,2})?"
                    r"(?:\s*,?\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?",
                    0.7,
                ),
                Pattern("po box", r"\b(?i:p\.?\s?o\.?\s+box)\s+\d{1,8}\b", 0.7),
                Pattern("city state zip", r"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)?,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?\b", 0.7),
            ],
            global_regex_flags=CASE_SENSITIVE,
        ),
        _Recognizer(
            "PERSON",
            [
                Pattern(  # "Hi John,", "Thanks, Morgan!", "Hey Ana Lopez."
                    "greeting name",
                    r"(?<=\b(?i:Hi|Hello|Hey|Dear|Hiya|Howdy|Thanks|Thank you|Sorry|Welcome|Cheers)\s*,?\s+)"
                    r"[A-Z][a-z]+(?:\s[A-Z][a-z]+)?(?=\s*[,.!?:;)–—-]|\s*$)",
                    0.6,
                ),
                Pattern("introduction", r"(?<=\b(?i:my name is|this is)\s+)[A-Z][a-z]+(?:\s[A-Z][a-z]+)?\b", 0.4),
                Pattern("in-game name", r"(?<=\b(?i:my name is)\s+)[\w.]*[\d_-][\w.-]*\w", 0.4),  # "FWL-Christos"
                # "…, Justin.", "…on you, Manny Jr!"
                Pattern("trailing vocative", r"(?<=,\s)[A-Z][a-z]{2,}(?:\sJr\.?|\s[A-Z][a-z]+)?(?=[.!?](?:\s|$))", 0.5),
                # "Thank you for the feedback, Faith, and we appreciate…"
                Pattern(
                    "vocative", r"(?<=\b[a-z]+,\s)[A-Z][a-z]{2,}(?=,\s(?:and|we|but|I|please|thanks?|thank)\b)", 0.5
                ),
            ],
            not_pii=_NOT_NAMES,
            global_regex_flags=CASE_SENSITIVE,
        ),
    ]
