"""Blocks → chunks that fit the embedder: packed within one heading section, split at sentence
boundaries only when a block is too long, with a small sentence overlap between neighbours."""

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


def chunk_blocks(
    blocks: Iterable[Block], count: Callable[[str], int], max_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """Pack *blocks* into chunks of at most *max_tokens* (heading included, as embedded)."""
    chunks: list[Chunk] = []
    for heading_path, section in groupby(blocks, key=lambda b: b.heading_path):
        heading_cost = count(HEADING_SEPARATOR.join(heading_path)) if heading_path else 0
        budget = max(16, max_tokens - heading_cost)
        current: list[_Piece] = []

        def emit() -> None:
            text = "\n".join(p.text for p in current)
            chunks.append(Chunk(len(chunks), text, heading_path, current[0].page))

        for block in section:
            for piece in _pieces(block, count, budget):
                if current and sum(p.tokens for p in current) + piece.tokens > budget:
                    emit()
                    carried: list[_Piece] = []
                    for previous in reversed(current):
                        if not previous.sentence or sum(p.tokens for p in carried) + previous.tokens > overlap_tokens:
                            break
                        carried.insert(0, previous)
                    if sum(p.tokens for p in carried) + piece.tokens > budget:
                        carried = []
                    current = carried
                current.append(piece)
        if current:
            emit()
    return chunks
