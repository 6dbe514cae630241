"""An offline stand-in for spaCy's ``en_core_web_sm``, which unstructured would download at run time.

unstructured uses spaCy for three things while classifying text: sentence splitting, word
tokens and "does this line contain a verb" (short lines without a verb become titles). A
blank English pipeline with a sentencizer covers the first two; a small verb lexicon with
suffix rules covers the third well enough for manuals ("Tap Settings", "Press and hold").
"""

from __future__ import annotations

from functools import lru_cache

import spacy
from spacy.language import Language
from spacy.tokens import Doc

_VERBS = frozenset(
    """
    be is are was were been being am have has had do does did can could will would shall should may
    might must add allow appear apply back block browse buy call cancel change charge check choose
    clean clear click close come configure confirm connect contact continue copy create delete
    disable disconnect display download drag drop edit enable enter erase find follow get give go
    hold install keep launch let lock log look make manage move need open pair pause place plug
    power press print pull push put read receive record reduce release remove rename repeat replace
    reset restart restore return run save scan scroll see select send set share show sign slide
    start stop swipe switch sync take tap touch try turn type uninstall unlock unplug update upgrade
    upload use view wait want wake work write
    """.split()
)
_VERB_SUFFIXES = ("ing", "ed", "ize", "ise", "ify")


@Language.component("supportbot_verb_tagger")
def _verb_tagger(doc: Doc) -> Doc:
    for token in doc:
        lower = token.lower_
        if lower in _VERBS:
            token.tag_ = "VB"
        elif token.is_alpha and len(lower) > 4 and lower.endswith(_VERB_SUFFIXES):
            token.tag_ = "VBG" if lower.endswith("ing") else "VBN"
    return doc


@lru_cache(maxsize=1)
def offline_pipeline() -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("supportbot_verb_tagger")
    return nlp


def install() -> None:
    """Make unstructured use :func:`offline_pipeline` instead of downloading en_core_web_sm."""
    from unstructured.nlp import tokenize

    tokenize._get_nlp = offline_pipeline
