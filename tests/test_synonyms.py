"""Question words the manual never uses, matched to the passages' words by the real packaged embedder."""

from bot.answer.synonyms import SynonymMatcher

ROUTER = ["Q: Why is the light amber?\nA: Solid amber means the router has no internet connection. "
          "Pulsing amber means the router is waiting for set-up in the app.",
          "| Colour | Meaning | What to do |\n| Red | Hardware fault | Contact Northwind support |"]


def test_a_colour_and_a_blink_the_manual_names_otherwise_count_as_covered(embedder):
    matcher = SynonymMatcher(embedder)
    assert matcher.matched("What does a blinking orange light mean?", ["blink", "orang"], ROUTER) == 2


def test_off_topic_words_find_no_match_in_the_passages(embedder):
    matcher = SynonymMatcher(embedder)
    assert matcher.matched("How do I descale my espresso machine?", ["descal", "espresso"], ROUTER) == 0
    assert matcher.matched("What's a good recipe for banana bread?", ["recip", "banana", "bread"], ROUTER) == 0


def test_only_the_unknown_words_are_looked_at_and_zero_turns_it_off(embedder):
    # "amber" is known to the knowledge base: nothing to match, whatever the passages say
    assert SynonymMatcher(embedder).matched("Why is it amber?", [], ROUTER) == 0
    assert SynonymMatcher(embedder, threshold=0).matched("blinking orange light", ["blink", "orang"], ROUTER) == 0


def test_word_vectors_are_cached_and_bounded(embedder):
    matcher = SynonymMatcher(embedder, cache_size=5)
    matcher.matched("blinking orange light", ["blink", "orang"], ROUTER)
    assert len(matcher._vectors) == 5
