"""The serving guard: whatever a tone adapter writes — links, e-mail placeholders, handles, sign-offs, names —
never reaches the customer, in the default (quoted span + closing line) and the generate answer mode. A
scripted chat model stands in for an adapter that learnt such habits from tickets."""

from __future__ import annotations

import re
from itertools import cycle
from pathlib import Path

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from bot.answer.checks import SentenceCheck, guard
from bot.answer.compose import FALLBACK_CLOSING, safe_closing
from bot.chain import SupportChain
from bot.metrics import GUARD_CUTS
from ingestion.search import Searcher

SAMPLE_KB = Path(__file__).resolve().parents[1] / "bot" / "sample_kb"
# What the adapter trained on raw tickets wrote (issue 13), in one reply.
HABITS = (
    "The Aurora X2 supports WPA3. [1] Please follow the steps here: https://help.northwind.com/hc/en-us/articles/360 "
    "[3] Please send us an email at <EMAIL> (cc: <HANDLE>) and we will assist. Hi Ryan, call 1-800-555-0199 for "
    "order #4471234. Thanks for reaching out! -Steffi"
)
LEAKED = re.compile(r"https?://|northwind\.com|<[A-Z_]+>|Steffi|Ryan|555|4471234|@")


def scripted(text: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=cycle([AIMessage(text)]))


def cuts() -> dict[str, float]:
    return {s.labels["kind"]: s.value for m in GUARD_CUTS.collect() for s in m.samples if s.name.endswith("_total")}


@pytest.mark.parametrize(
    ("text", "allowed", "ok"),
    [
        ("The Aurora X2 supports WPA3.", "The Aurora X2 supports WPA3.", True),
        ("See https://help.northwind.com/x for steps.", "Open Settings.", False),
        ("See https://help.northwind.com/x for steps.", "Steps: https://help.northwind.com/x", True),  # quoted
        ("Please send us an email at <EMAIL>.", "", False),
        ("Call us at 415-555-0132.", "Support line: 415 555 0132.", True),
        ("Call us at 415-555-0132.", "", False),
        ("Hi Ryan, happy to help.", "", False),
        ("It costs $49.99 to replace.", "", False),
        ("We're happy to help! ~ Olivia", "", False),
        ("Hope this helps, let us know!", "", True),
        ("Please let us know the username and password.", "", False),  # a tuned 135M model wrote it
        ("Send us your PIN and the card number so we can check.", "", False),
        ("Share the Wi-Fi password with guests.", "Share the Wi-Fi password with guests from the app.", True),
        ("Tap Reset password, then follow the steps.", "", True),
    ],
)
def test_guard_allows_only_what_the_passages_hold(text: str, allowed: str, ok: bool) -> None:
    assert guard(text, allowed) is ok


def test_closing_lines_lose_names_and_sign_offs() -> None:
    assert safe_closing("Let us know if you need anything else, Sarah! Hope this helps.") == "Hope this helps."
    closing = "Thanks for reaching out! Have a great day."
    assert safe_closing(f"{closing} -Steffi") == closing


def test_a_written_sentence_with_an_invented_link_ends_the_answer_and_is_counted() -> None:
    before = cuts().get("link", 0)
    check = SentenceCheck("Does the Aurora X2 support WPA3?", ["The Aurora X2 supports WPA3 and WPA2."])
    shown = check.feed("The Aurora X2 supports WPA3. Steps are at https://help.northwind.com/hc/a/1 here. More.")
    assert shown == ["The Aurora X2 supports WPA3. "] and check.failure == "leak"
    assert cuts()["link"] == before + 1


@pytest.mark.parametrize("mode", ["compose", "generate"])
def test_what_the_adapter_writes_never_reaches_the_customer(ingestor, db, embedder, mode: str) -> None:
    ingestor.ingest_paths([SAMPLE_KB])
    chain = SupportChain(Searcher(db, embedder), scripted(HABITS), mode=mode)
    before = sum(cuts().values())
    events = list(chain.stream("Does the Aurora X2 support WPA3?"))
    answer = events[-1]
    shown = "".join(e for e in events[:-1] if isinstance(e, str))
    assert answer.handoff is None and "WPA3" in answer.text, answer.text
    assert not LEAKED.search(shown) and not LEAKED.search(answer.text), answer.text
    assert answer.closing in ("Thanks for reaching out!", FALLBACK_CLOSING)  # its one clean sentence, at most
    assert sum(cuts().values()) > before
