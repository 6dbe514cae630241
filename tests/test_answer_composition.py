"""The parts of answer composition that need no model: follow-ups, span selection, the sentence
checks a written answer passes, the closing-line filter and the handoff gate's request patterns."""

from __future__ import annotations

import pytest

from bot.answer.checks import SentenceCheck
from bot.answer.compose import composed_text, safe_closing, span_text
from bot.answer.followup import is_follow_up, standalone_question
from bot.answer.gate import GateSignals, answerable, request_handoff
from bot.answer.span import SPAN_WORDS, Span, select_span, terms
from ingestion.search import Hit


def hit(text: str, heading: list[str] | None = None, number: int = 1) -> Hit:
    return Hit(chunk_id=number, document_id=1, text=text, title="Manual", source="manual.html",
               heading_path=heading or [], page=None, collection="default", product=None, score=1.0,
               similarity=0.5, vector_rank=number, text_rank=number)


# --- follow-ups ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "follow_up"),
    [
        ("How do I update the firmware?", False),
        ("What does the amber light mean?", False),
        ("and how long does that take?", True),
        ("what about the guest one?", True),
        ("Why?", True),
        ("Can it switch off by itself?", True),
        ("Can I change the Wi-Fi password of the guest network from the app?", False),
    ],
)
def test_is_follow_up(question, follow_up):
    assert is_follow_up(question) is follow_up


def test_a_self_contained_question_is_never_glued_to_the_previous_one():
    previous = ["What does the amber light mean?"]
    assert standalone_question("How do I update the firmware?", previous) == "How do I update the firmware?"


def test_a_follow_up_keeps_the_topic_of_the_last_self_contained_question():
    previous = ["How do I update the firmware?", "and is it free?"]
    assert standalone_question("how long does that take?", previous) == (
        "How do I update the firmware? and is it free? how long does that take?"
    )
    assert standalone_question("how long does that take?", []) == "how long does that take?"


# --- span selection ------------------------------------------------------------------------

STEPS = hit(
    "From Settings, tap Apps.\nTap Choose default apps.\nTap Browser app and select the app to open links.\n"
    + "\n".join(f"Unrelated line {i} about notifications and sounds of the phone." for i in range(20)),
    ["Apps", "Default apps"],
)
LIGHTS = hit("A solid amber light means the router has no internet connection.\nA blinking green light means "
             "it is updating.", ["Lights"], number=2)


def idf_of(*texts: str) -> dict[str, float]:
    return {t: 1.0 for text in texts for t in terms(text)}


def test_span_of_a_long_passage_keeps_the_opening_line_and_the_best_lines():
    question = "How do I choose the default browser app for links?"
    span = select_span(question, [STEPS, LIGHTS], idf_of(STEPS.text, "default apps"))
    assert span is not None and span.passage == 1 and not span.whole
    assert span.text.startswith("From Settings, tap Apps.")
    assert "Tap Browser app and select the app to open links." in span.text
    assert len(span.text.split()) <= SPAN_WORDS and span.match > 0.5


# Read on the S10: camera settings introduce in their first line and say where the options are in the
# second; app settings take two lines of introduction before "From Settings, tap Apps".
WAY_IN = [
    ("Use the icons on the main camera screen and the settings menu to configure your camera's settings.\n"
     "From Camera, tap Settings for the following options:", "How can I set up a shutter sound on my camera?",
     "Shutter sound: Play a tone when taking a picture."),
    ("Manage your downloaded and preloaded apps.\nOptions vary by app.\nFrom Settings, tap Apps.",
     "How to set the app as a default app?",
     "Set as default: Set the app as a default for a certain category of apps."),
]


@pytest.mark.parametrize(("opening", "question", "answer"), WAY_IN)
def test_span_of_a_long_section_keeps_its_opening_up_to_the_way_in(opening, question, answer):
    options = "\n".join(f"Option {i}: change what feature {i} of the device saves and shares." for i in range(20))
    section = hit(f"{opening}\n{options}\n{answer}", ["Settings"])
    span = select_span(question, [section], idf_of(section.text))
    assert span is not None and not span.whole
    lines = span.text.split("\n")
    assert lines[: opening.count("\n") + 1] == opening.split("\n") and lines[-1] == answer


def test_span_comes_from_a_lower_ranked_passage_that_holds_the_answer():
    question = "What does a solid amber light mean?"
    span = select_span(question, [STEPS, LIGHTS], idf_of(STEPS.text, LIGHTS.text))
    assert span is not None and span.passage == 2 and span.whole
    assert span.text == LIGHTS.text


def test_a_passage_stands_for_its_whole_section():
    """The first-ranked chunk of a long section holds its introduction; the steps the customer asks for
    are in a later chunk of the same section, which retrieval did not return."""
    intro = hit("TOTP codes are a popular second factor.\nMany websites support them.", ["Entries", "TOTP"])
    later = "TOTP codes are a popular second factor.\nTo set up TOTP, right-click the entry and choose TOTP > Set up."
    question = "How do I set up TOTP for an entry?"
    idf = idf_of(intro.text, later, LIGHTS.text)
    alone = select_span(question, [intro, LIGHTS], idf)
    assert alone is not None and "right-click" not in alone.text
    sections = {(1, ("Entries", "TOTP")): [intro.text, later], (1, ("Lights",)): [LIGHTS.text]}
    span = select_span(question, [intro, LIGHTS], idf, sections)
    assert span is not None and span.passage == 1
    assert span.text == ("TOTP codes are a popular second factor.\nMany websites support them.\n"
                         "To set up TOTP, right-click the entry and choose TOTP > Set up.")  # each line once


def test_no_passages_no_span():
    assert select_span("anything", [], {}) is None


def test_composed_text_quotes_the_span_with_its_citation_and_drops_faq_labels():
    faq = Span(3, "Q: Is there a warranty?\nA: Yes, two years.\n- covers parts\n- covers labour", 1.0, 1.0, True)
    assert span_text(faq) == "Yes, two years.\n\n- covers parts\n- covers labour"
    assert composed_text(faq).endswith("- covers labour [3]")
    figure = Span(1, "Click Compact mode.\nFigure 4. Compact mode comparison\nIcons get smaller.", 1.0, 1.0, True)
    assert span_text(figure) == "Click Compact mode.\n\nIcons get smaller."
    # Overlapping chunks of one section repeat a line (read on a KeePassXC answer): it is shown once.
    overlap = Span(1, "All the details are stored in database entries.\nAdd a URL to download the icon.\n"
                      "All the  details are stored in database entries.\nAdd tags to the entry.\n- Yes\n- Yes",
                   1.0, 1.0, True)
    assert span_text(overlap) == ("All the details are stored in database entries.\n\nAdd a URL to download the icon."
                                  "\n\nAdd tags to the entry.\n\n- Yes\n- Yes")


# --- sentence checks (generate mode) -------------------------------------------------------

PASSAGES = ["To reset the router, hold the RESET button for 10 seconds with a paperclip. The light turns amber."]


def feed_all(check: SentenceCheck, text: str) -> str:
    words = text.split(" ")
    pieces = [w + " " for w in words[:-1]] + words[-1:]  # streamed a word at a time
    return "".join(s for piece in pieces for s in check.feed(piece)) + check.finish()


def test_supported_sentences_pass_whole():
    check = SentenceCheck("How do I reset the router?", PASSAGES)
    shown = feed_all(check, "Hold the RESET button for 10 seconds with a paperclip [1]. The light turns amber.")
    assert shown.strip() == "Hold the RESET button for 10 seconds with a paperclip [1]. The light turns amber."
    assert check.failure is None and check.shown == 2


def test_a_repeated_sentence_ends_the_answer():
    check = SentenceCheck("How do I reset the router?", PASSAGES)
    shown = feed_all(check, "The light turns amber. The light turns amber. The light turns amber.")
    assert shown.strip() == "The light turns amber." and check.failure == "repeated"


def test_an_invented_step_ends_the_answer():
    check = SentenceCheck("How do I reset the router?", PASSAGES)
    shown = feed_all(check, "Hold the RESET button. Then open the user manual and click Delete account.")
    assert shown.strip() == "Hold the RESET button." and check.failure == "unsupported"


def test_a_negation_the_passages_do_not_hold_ends_the_answer():
    check = SentenceCheck("Does the router support WPA3?", ["The Aurora X2 supports WPA3 and WPA2."])
    assert feed_all(check, "No, the Aurora X2 does not support WPA3.") == ""
    assert check.failure == "contradicts"


def test_a_sentence_cut_off_by_the_token_limit_is_dropped():
    check = SentenceCheck("How do I reset the router?", PASSAGES)
    shown = feed_all(check, "Hold the RESET button for 10 seconds. The light turns")
    assert shown.strip() == "Hold the RESET button for 10 seconds."


# --- the closing line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generated", "kept"),
    [
        ("I'm so glad you're enjoying our product! If you have any more questions or need further assistance, "
         "just let me know. I'm always happy to help",
         "If you have any more questions or need further assistance, just let me know."),
        ("Please send us an email at <EMAIL> and we will help.", None),
        ("Visit https://help.example.com for more.", None),
        ("Tap Settings to reset it. Have a great day!", "Have a great day!"),
        ("No, it does not support that.", None),
        ("You can simply end your message with a friendly phrase like", None),
    ],
)
def test_safe_closing_keeps_only_fact_free_complete_sentences(generated, kept):
    assert safe_closing(generated) == kept


# --- the handoff gate ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("Where is my order? I ordered two weeks ago.", "needs_account_access"),
        ("I was charged twice, please refund one of the payments.", "needs_account_access"),
        ("Why was my warranty claim rejected? The reference is WC-20931.", "needs_account_access"),
        ("Is it legal to record phone calls?", "needs_account_access"),
        ("Can I talk to a real person?", "customer_asked"),
        ("I want to speak to a manager.", "customer_asked"),
        ("How long does the warranty last?", None),
        ("How do I order the apps on my home screen?", None),
        ("How do I set up my Samsung account?", None),
        ("How do I change the password of my database?", None),
    ],
)
def test_request_handoff(question, reason):
    assert request_handoff(question) == reason


def test_the_gate_needs_both_relevance_and_span_match():
    assert answerable(GateSignals(0.6, 1.0, 0.5), 0.27, 0.2)
    assert not answerable(GateSignals(0.6, 0.4, 0.5), 0.27, 0.2)  # words the knowledge base never uses
    assert not answerable(GateSignals(0.6, 1.0, 0.1), 0.27, 0.2)  # the span misses what was asked
