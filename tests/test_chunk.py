"""Chunking with the real MiniLM tokenizer: size limits, heading paths, overlap, whole tables."""

from itertools import pairwise

from ingestion.chunk import chunk_blocks
from ingestion.parse import Block

MAX = 96


def sentences(prefix: str, n: int) -> str:
    return " ".join(f"{prefix} sentence number {i} explains one more detail about the device." for i in range(n))


def test_chunks_fit_the_embedder(embedder):
    blocks = [Block(sentences("Alpha", 40), ("Manual", "Long section"), page=3)]
    chunks = chunk_blocks(blocks, embedder.count_tokens, MAX, overlap_tokens=24)
    assert len(chunks) > 3
    for chunk in chunks:
        assert embedder.count_tokens(chunk.embedding_text()) <= MAX + 4  # joins add no real tokens
        assert chunk.heading_path == ("Manual", "Long section")
        assert chunk.page == 3
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_neighbours_overlap_and_repeat_the_section_lead(embedder):
    blocks = [Block(sentences("Beta", 30), ("Guide", "Setup"))]
    chunks = chunk_blocks(blocks, embedder.count_tokens, MAX, overlap_tokens=24)
    lead = "Beta sentence number 0 explains one more detail about the device."
    for previous, chunk in pairwise(chunks):
        assert chunk.text.startswith(lead)
        last_sentence = previous.text.split("\n")[-1]
        assert last_sentence in chunk.text  # the sentence overlap
    # every sentence survives chunking
    for i in range(30):
        assert any(f"Beta sentence number {i} " in c.text for c in chunks)


def test_small_blocks_pack_within_a_section_but_not_across(embedder):
    blocks = [
        Block("Tap Settings.", ("M", "A")),
        Block("Tap Display.", ("M", "A")),
        Block("Tap Sound.", ("M", "B")),
    ]
    chunks = chunk_blocks(blocks, embedder.count_tokens, MAX, overlap_tokens=24)
    assert [(c.heading_path[-1], c.text) for c in chunks] == [("A", "Tap Settings.\nTap Display."), ("B", "Tap Sound.")]


def test_table_that_fits_is_never_split(embedder):
    table = "\n".join(f"Mode {i} | {i * 100} rpm | {i} dB" for i in range(12))
    blocks = [Block(sentences("Gamma", 4), ("Fan", "Specs")), Block(table, ("Fan", "Specs"), whole=True)]
    chunks = chunk_blocks(blocks, embedder.count_tokens, 160, overlap_tokens=24)
    holding = [c for c in chunks if "Mode 0 |" in c.text]
    assert len(holding) == 1 and "Mode 11 |" in holding[0].text


def test_oversized_table_splits_between_rows(embedder):
    table = "\n".join(f"Row {i} | value {i}" for i in range(80))
    chunks = chunk_blocks([Block(table, ("T",), whole=True)], embedder.count_tokens, MAX, overlap_tokens=24)
    assert len(chunks) > 1
    rows = [line for c in chunks for line in c.text.split("\n")]
    assert rows == [f"Row {i} | value {i}" for i in range(80)]  # whole rows, in order, no overlap
