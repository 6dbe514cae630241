"""Blocks → chunks that fit the embedder: packed within one heading section, split at sentence
boundaries only when a block is too long, with a small sentence overlap between neighbours.

When a section needs several chunks, each later chunk starts with the section's opening
sentence ("lead"), so that it stands on its own: manuals put the what-and-where ("From
Settings, tap Display") first and the option the customer asks about further down."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import groupby

from ingestion.parse import Block

HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Chunk:
    position: int
    text: str
    heading_path: tuple[str, ...]
    page: int | None

    @property
    def heading(self) -> str:
        return HEADING_SEPARATOR.join(self.heading_path)

    def embedding_text(self) -> str:
        """What the embedder sees: the section's heading path, then the text."""
        return f"{self.heading}\n{self.text}" if self.heading_path else self.text


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int
    page: int | None
    sentence: bool  # a sentence cut from a longer block: may be repeated as overlap


def _sentences(text: str) -> list[str]:
    from ingestion.nlp import offline_pipeline

    return [s.text.strip() for s in offline_pipeline()(text).sents if s.text.strip()]


def _split_words(text: str, count: Callable[[str], int], budget: int) -> list[str]:
    """Last resort for a single over-long sentence or table line: windows of whole words."""
    parts, current = [], []
    for word in text.split():
        if current and count(" ".join([*current, word])) > budget:
            parts.append(" ".join(current))
            current = []
        current.append(word)
    if current:
        parts.append(" ".join(current))
    return parts


def _pieces(block: Block, count: Callable[[str], int], budget: int) -> list[_Piece]:
    tokens = count(block.text)
    if tokens <= budget:
        return [_Piece(block.text, tokens, block.page, sentence=False)]
    # Too long for one chunk: tables split between rows, prose between sentences.
    units = block.text.split("\n") if block.whole else _sentences(block.text)
    pieces = []
    for unit in units:
        for part in [unit] if count(unit) <= budget else _split_words(unit, count, budget):
            pieces.append(_Piece(part, count(part), block.page, sentence=not block.whole))
    return pieces


def _lead(first: Block, count: Callable[[str], int], lead_tokens: int) -> _Piece | None:
    """The section's opening sentence, if it is short enough to repeat."""
    if first.whole or lead_tokens <= 0:
        return None
    sentences = _sentences(first.text)
    if not sentences:
        return None
    tokens = count(sentences[0])
    return _Piece(sentences[0], tokens, first.page, sentence=False) if tokens <= lead_tokens else None


def _pack(pieces: list[_Piece], first_budget: int, later_budget: int, overlap_tokens: int) -> list[list[_Piece]]:
    """Greedy packing; a new window repeats the previous one's last sentences up to *overlap_tokens*."""
    windows: list[list[_Piece]] = []
    current: list[_Piece] = []
    for piece in pieces:
        room = later_budget if windows else first_budget
        if current and sum(p.tokens for p in current) + piece.tokens > room:
            windows.append(current)
            carried: list[_Piece] = []
            for previous in reversed(current):
                if not previous.sentence or sum(p.tokens for p in carried) + previous.tokens > overlap_tokens:
                    break
                carried.insert(0, previous)
            current = carried if sum(p.tokens for p in carried) + piece.tokens <= later_budget else []
        current.append(piece)
    if current:
        windows.append(current)
    return windows


def chunk_blocks(
    blocks: Iterable[Block],
    count: Callable[[str], int],
    max_tokens: int,
    overlap_tokens: int,
    lead_tokens: int = 48,
) -> list[Chunk]:
    """Pack *blocks* into chunks of at most *max_tokens* (heading included, as embedded)."""
    chunks: list[Chunk] = []
    for heading_path, group in groupby(blocks, key=lambda b: b.heading_path):
        section = list(group)
        heading_cost = count(HEADING_SEPARATOR.join(heading_path)) if heading_path else 0
        budget = max(16, max_tokens - heading_cost)
        lead = _lead(section[0], count, lead_tokens)
        later_budget = budget - (lead.tokens if lead else 0)  # later chunks carry the lead
        pieces = [piece for block in section for piece in _pieces(block, count, later_budget)]
        for i, window in enumerate(_pack(pieces, budget, later_budget, overlap_tokens)):
            page = window[0].page
            if lead and i > 0 and not window[0].text.startswith(lead.text):
                window = [lead, *window]
            chunks.append(Chunk(len(chunks), "\n".join(p.text for p in window), heading_path, page))
    return chunks
