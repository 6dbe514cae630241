"""Chat-template control sequences in untrusted text (documents, customer messages, tickets).

ChatML, Llama, Gemma, … mark turns with sequences that a tokenizer reads as real special tokens;
quoted text holding them could fake a new system or assistant turn.
"""

import re

CHAT_CONTROL = re.compile(
    r"<\|[^|>]{1,40}\|>|\[/?INST\]|<</?SYS>>|<start_of_turn>|<end_of_turn>|</?s>|<\|eot_id\|>",
    flags=re.IGNORECASE,
)


def neutralise(text: str) -> str:
    """Replace chat-template control sequences with a space."""
    return CHAT_CONTROL.sub(" ", text)
