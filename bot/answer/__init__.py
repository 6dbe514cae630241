"""Composing the answer a customer reads: follow-up condensing, span selection, the tone opening,
and the checks every written sentence passes."""
