"""PII redaction of ticket text with presidio, offline: typed placeholders such as <EMAIL>, <PHONE>, <CARD>.

presidio's default NLP engine loads spaCy ``en_core_web_lg``, which cannot be downloaded here (and whose
NER is the slow part). This engine is spaCy's blank English tokenizer, with lower-cased words as lemmas
so that presidio's context words ("phone", "email", …) still raise scores. Every recognizer is a pattern
or validator: presidio's own for e-mail, phone (libphonenumber), card (Luhn), IBAN (checksum), IP, UUID,
US SSN and UK postcode, plus :mod:`finetune.pii_rules` for handles, links, account/order numbers, long IDs,
street addresses, user names and names after a greeting. Without NER, names are only caught after a
greeting ("Hi John,") or as a trailing vocative ("…, Justin.").

Handles: a brand's own handle (``keep_handles``, e.g. the conversation's company "@TeamYouTube") is an
organisation account, not personal data, and is kept; every other @handle becomes <HANDLE>.

Overlaps: the longer match wins (a URL over the e-mail inside it; an article link shields the article ID
inside it); on equal spans, the order of ``PRIORITY``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import spacy
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UkPostcodeRecognizer,
    UsSsnRecognizer,
    UuidRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from spacy.language import Language
from spacy.tokens import Doc

from finetune.pii_rules import strip_tracking, supportbot_recognizers

# presidio entity → the placeholder type written into the text as <TYPE> and counted in reports.
PLACEHOLDER_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
    "HANDLE": "HANDLE",
    "URL": "URL",
    "ADDRESS": "ADDRESS",
    "UK_POSTCODE": "ADDRESS",
    "ACCOUNT_ID": "ACCOUNT_ID",
    "US_SSN": "ID",
    "UUID": "ID",
    "CRYPTO": "ID",
    "LONG_ID": "ID",
    "PERSON": "NAME",
}
KEEP = "SAFE_URL"  # an article link: kept (less its tracking parameters), and nothing inside it is redacted
# ACCOUNT_ID before PHONE: it only matches after a cue ("case 0012345678"), which is the better evidence.
PRIORITY = [KEEP, "CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS", "URL", "ACCOUNT_ID", "PHONE_NUMBER", "IP_ADDRESS",
            "US_SSN", "UUID", "CRYPTO", "ADDRESS", "UK_POSTCODE", "HANDLE", "PERSON", "LONG_ID"]  # fmt: skip


@Language.component("supportbot_lower_lemma")
def _lower_lemma(doc: Doc) -> Doc:
    for token in doc:
        token.lemma_ = token.lower_
    return doc


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """presidio's spaCy engine over ``spacy.blank("en")``: tokens and lemmas, no model to download."""

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

    def load(self) -> None:
        nlp = spacy.blank("en")
        nlp.add_pipe("supportbot_lower_lemma")
        self.nlp = {"en": nlp}


@dataclass
class Redaction:
    text: str
    found: Counter[str] = field(default_factory=Counter)  # placeholder type → occurrences replaced


@lru_cache(maxsize=1)
def _analyzer(score_threshold: float) -> AnalyzerEngine:
    """Built once per process (~0.1 s); the engines are stateless between calls."""
    recognizers = [
        CreditCardRecognizer(),
        CryptoRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        PhoneRecognizer(),
        UkPostcodeRecognizer(),
        UsSsnRecognizer(),
        UuidRecognizer(),
        *supportbot_recognizers(),
    ]
    engine = BlankSpacyNlpEngine()
    engine.load()
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    return AnalyzerEngine(
        registry=registry, nlp_engine=engine, supported_languages=["en"], default_score_threshold=score_threshold
    )


@lru_cache(maxsize=64)
def _identifiers(names: tuple[str, ...]) -> re.Pattern[str]:
    """Known customer identifiers as whole words, with or without "@", any case (``re`` compiles faster)."""
    return re.compile(r"(?<![\w@])@?(?:" + "|".join(map(re.escape, names)) + r")(?!\w)", re.IGNORECASE)


_ERROR_CODE_PREFIX = re.compile(r"[A-Za-z]{1,4}-$")


def _plausible(result: RecognizerResult, text: str) -> bool:
    """libphonenumber accepts short numbers in some regions: PS4 error codes ("CE-37368-7") are no phones."""
    if result.entity_type != "PHONE_NUMBER":
        return True
    digits = sum(c.isdigit() for c in text[result.start : result.end])
    return digits >= 8 and not _ERROR_CODE_PREFIX.search(text[max(0, result.start - 5) : result.start])


def _resolve(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Non-overlapping results: longest first, then by PRIORITY."""
    chosen: list[RecognizerResult] = []
    ranked = sorted(results, key=lambda r: (r.start - r.end, PRIORITY.index(r.entity_type), -r.score))
    for result in ranked:
        if all(result.end <= c.start or result.start >= c.end for c in chosen):
            chosen.append(result)
    return sorted(chosen, key=lambda r: r.start)


class Redactor:
    """Replaces PII in text with typed placeholders; one instance serves any number of texts."""

    def __init__(self, keep_handles: Iterable[str] = (), score_threshold: float = 0.4) -> None:
        self.keep_handles = frozenset(h.lstrip("@").lower() for h in keep_handles)
        self.analyzer = _analyzer(score_threshold)
        self.anonymizer = AnonymizerEngine()
        operators = {e: OperatorConfig("replace", {"new_value": f"<{kind}>"}) for e, kind in PLACEHOLDER_TYPES.items()}
        self.operators = {**operators, KEEP: OperatorConfig("custom", {"lambda": strip_tracking})}

    def redact(self, text: str, keep_handles: Iterable[str] = (), customer_ids: Iterable[str] = ()) -> Redaction:
        """*keep_handles* add brand handles to keep; *customer_ids* (e.g. the customer's handle from the
        export) are redacted wherever they appear, with or without "@"."""
        if not text.strip():
            return Redaction(text)
        keep = self.keep_handles | {h.lstrip("@").lower() for h in keep_handles}
        known = tuple(sorted({c.lstrip("@") for c in customer_ids if c and c.lstrip("@").lower() not in keep}))
        results = self.analyzer.analyze(text, language="en")
        if known:  # matched here, not by an ad-hoc presidio recognizer: that compiles its regex on every call
            results += [RecognizerResult("HANDLE", m.start(), m.end(), 1.0) for m in _identifiers(known).finditer(text)]
        results = [
            r
            for r in results
            if _plausible(r, text)
            and not (r.entity_type == "HANDLE" and text[r.start : r.end].lstrip("@").lower() in keep)
        ]
        results = _resolve(results)
        if not results:
            return Redaction(text)
        found = Counter(PLACEHOLDER_TYPES[r.entity_type] for r in results if r.entity_type != KEEP)
        anonymized = self.anonymizer.anonymize(text=text, analyzer_results=results, operators=self.operators)
        return Redaction(anonymized.text, found)
