"""Common given names, for the name rules of :mod:`finetune.pii_rules` (no NER model works offline here).

A name is only looked up where a name can stand: after a greeting ("Hi Tucker I notice…"), as a sign-off
("…clarify. Jason"), as a bare vocative ("Thanks for the tweet Janet."), or opening a reply ("Edgar - sorry…").
Given names that are also common English or product words (Will, May, Grace, Chase, Max, Ruby…) are left out:
in those places the structural rules (a sign-off mark, a following comma) still catch them.
"""

from __future__ import annotations

_NAMES = """
aaron abby abdul abigail adam adrian adriana ahmed aidan aiden aisha alan albert alejandro alex alexander
alexandra alexis alfred ali alice alicia alison allison alma alyssa amanda amelia amir amit amy ana andre andrea
andres andrew andy angela angelica angie anita ann anna anne annie anthony antonio arjun arthur ashley audrey
barbara beatrice becky ben benjamin bernard beth bethany betty beverly bianca brad bradley brandon brenda brendan
brent brian bridget brittany brooke bruce bryan caitlin caleb cameron camila carla carlos carmen carol caroline
carolyn casey cassandra catherine cecilia chad charles charlie charlotte chelsea cheryl chloe chris christian
christina christine christopher cindy claire clara claudia cody colin connor courtney craig cristina cynthia
daisy dale dan dana daniel daniela danielle danny darren david dean debbie deborah denise dennis derek diana
diane diego dmitri dominic donald donna doris dorothy douglas dylan eddie edgar eduardo edward eileen elaine
elena eli elijah elisa elizabeth ella ellen emily emma eric erica erik erin esther ethan eugene eva evan evelyn
fatima felipe felix fernando fiona frances francesca francis francisco frank gabriel gabriela gabrielle gary
gavin gemma george gerald gina giovanni gloria gordon greg gregory hailey hannah harold harry hassan heather
heidi helen henry hector holly howard hugo ian irene isaac isabel isabella ivan jacob jacqueline jake james
jamie jan jane janet janice jared jason javier jay jean jeff jeffrey jeh jen jenna jennifer jenny jeremy jerry
jesse jessica jesus jill jim jimmy joan joanna joe joel john johnny jon jonathan jorge jose joseph josh joshua
joyce juan judith judy julia julian julie justin kaitlyn karen karina kate katherine kathleen kathryn kathy katie
kayla keith kelly kelsey ken kenneth kevin kim kimberly kristen kristin kristy kyle laura lauren lawrence leah
lee leo leon leonardo leslie liam linda lindsay lisa logan lois lorena lori louis louise lucas lucia lucy luis
luke lydia lynn madeline maggie manuel marco marcus margaret maria marie marilyn marisa marissa martha
martin mary matt matthew maureen megan melanie melissa mia michael michelle miguel mike mila sasha miranda mohamed
mohammed molly monica morgan muhammad nadia nancy naomi natalie natasha nathan nathaniel neil nicholas nick
nicole nina noah nora olivia omar oscar owen pablo pamela patricia patrick paul paula pedro peter philip priya
rachel rafael rahul ralph ramon randy raquel raul rebecca regina rene renee ricardo richard rick rjay robert
roberto robin rodrigo roger ronald rosa ross roy russell ryan sabrina sally samantha samuel sandra santiago sara
sarah scott sean sergio shane shannon sharon shawn sheila shirley simon sofia sonia sophia sophie stacy
stephanie stephen steffi steve steven susan suzanne sylvia tamara tanya tara teresa terry theresa thomas tiffany
tim timothy tina todd tom tommy tony tracy travis trinity tucker tyler valentina valerie vanessa vera veronica
victor vincent virginia walter wayne wendy william xavier yasmin yolanda yuki zachary zoe
"""
FIRST_NAMES: frozenset[str] = frozenset(_NAMES.split())


def is_first_name(word: str) -> bool:
    """True for a capitalised common given name ("Janet"; not "janet", not "JANET")."""
    return word[:1].isupper() and word[1:].islower() and word.lower() in FIRST_NAMES
