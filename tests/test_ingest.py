"""Ingestion into a real PostgreSQL: incremental, all-or-nothing, bad files fail alone."""

import threading

import numpy as np
import pytest

from ingestion import store
from ingestion.chunk import Chunk
from tests.documents import write_pdf


def chunk_rows(db, document_id):
    with db.connection() as conn:
        return conn.execute(
            "SELECT id, position, text, heading_path, page FROM chunks WHERE document_id = %s ORDER BY position",
            (document_id,),
        ).fetchall()


def test_ingest_then_unchanged_then_replaced(ingestor, db, manual_md):
    first = ingestor.ingest_file(manual_md, collection="fans", product="zephyr")
    assert first.outcome == "added" and first.version == 1 and first.chunks >= 3
    before = chunk_rows(db, first.document_id)
    assert any(r["heading_path"] == ["Zephyr Fan Manual", "Night mode"] for r in before)

    again = ingestor.ingest_file(manual_md, collection="fans", product="zephyr")
    assert again.outcome == "unchanged" and again.document_id == first.document_id
    assert "unchanged" in again.message
    assert chunk_rows(db, first.document_id) == before  # same rows, not re-written

    manual_md.write_text(manual_md.read_text().replace("20 percent", "15 percent"))
    changed = ingestor.ingest_file(manual_md, collection="fans", product="zephyr")
    assert (changed.outcome, changed.document_id, changed.version) == ("replaced", first.document_id, 2)
    texts = " ".join(r["text"] for r in chunk_rows(db, first.document_id))
    assert "15 percent" in texts and "20 percent" not in texts

    docs = store.list_documents(db)
    assert [(d["source"], d["collection"], d["product"], d["version"]) for d in docs] == [
        ("zephyr-fan.md", "fans", "zephyr", 2)
    ]
    with db.connection() as conn:
        log = [r["outcome"] for r in conn.execute("SELECT outcome FROM ingestion_log ORDER BY id")]
    assert log == ["added", "unchanged", "replaced"]


def test_bad_files_fail_alone_and_stored_documents_survive(ingestor, db, tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    good_pdf = write_pdf(folder / "guide.pdf", [["Hold the power key for ten seconds to restart the speaker."]])
    (folder / "faq.csv").write_text("question,answer\nDoes it float?,No. Keep it away from pools.\n")
    first = ingestor.ingest_paths([folder])
    assert [o.outcome for o in first] == ["added", "added"]
    guide_id = next(o.document_id for o in first if o.source == "guide.pdf")
    guide_chunks = chunk_rows(db, guide_id)

    # The PDF is now truncated, a new file is empty, another is binary, and a good one is new.
    data = good_pdf.read_bytes()
    good_pdf.write_bytes(data[: len(data) // 2])
    (folder / "empty.md").write_bytes(b"")
    (folder / "blob.txt").write_bytes(bytes(range(256)) * 8)
    (folder / "extra.md").write_text("# Extra\n\nThe speaker pairs with two phones at once.\n")
    outcomes = {o.source: o for o in ingestor.ingest_paths([folder])}

    assert outcomes["extra.md"].outcome == "added"
    assert outcomes["faq.csv"].outcome == "unchanged"
    for name, reason in [("guide.pdf", "truncated PDF"), ("empty.md", "empty file"), ("blob.txt", "binary content")]:
        assert outcomes[name].outcome == "failed"
        assert outcomes[name].message.startswith(str(folder / name)) and reason in outcomes[name].message
        assert "\n" not in outcomes[name].message
    assert chunk_rows(db, guide_id) == guide_chunks  # the stored version is untouched
    assert sorted(d["source"] for d in store.list_documents(db)) == ["extra.md", "faq.csv", "guide.pdf"]


def test_a_failed_write_leaves_the_previous_version_whole(ingestor, db, manual_md, embedder):
    first = ingestor.ingest_file(manual_md)
    before = chunk_rows(db, first.document_id)
    chunks = [Chunk(i, f"new text {i}", ("New",), None) for i in range(3)]
    vectors = [*embedder.embed(["x"] * 2), np.zeros(5, dtype=np.float32)]  # the last one has a bad size
    with pytest.raises(Exception, match="expected 384 dimensions"):
        store.write_document(
            db, source=manual_md.name, title="t", collection="default", product=None, kind="manual",
            content_hash="other", size=1, chunks=chunks, vectors=vectors,
        )
    assert chunk_rows(db, first.document_id) == before
    assert store.list_documents(db)[0]["version"] == 1


def test_readers_never_see_a_mix_of_versions(ingestor, db, tmp_path):
    path = tmp_path / "notes.md"

    def version(marker: str, sections: int) -> None:
        path.write_text("\n\n".join(f"## Part {i}\n\nThe {marker} text of part {i}." for i in range(sections)))

    version("alpha", 3)
    doc_id = ingestor.ingest_file(path).document_id
    seen: list[tuple[int, set[str]]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            rows = chunk_rows(db, doc_id)
            seen.append((len(rows), {r["text"].split()[1] for r in rows}))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(4):
            version("beta" if i % 2 == 0 else "alpha", 5 if i % 2 == 0 else 3)
            assert ingestor.ingest_file(path).outcome == "replaced"
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 5
    assert {(n, frozenset(markers)) for n, markers in seen} <= {(3, frozenset({"alpha"})), (5, frozenset({"beta"}))}


def test_delete_document(ingestor, db, manual_md):
    doc_id = ingestor.ingest_file(manual_md).document_id
    assert store.delete_document(db, doc_id)["source"] == manual_md.name
    assert store.list_documents(db) == [] and chunk_rows(db, doc_id) == []
    assert store.delete_document(db, doc_id) is None
    with db.connection() as conn:
        stats = conn.execute("SELECT nchunks, total_length FROM corpus_stats").fetchone()
        lexemes = conn.execute("SELECT count(*) AS n FROM lexeme_stats").fetchone()["n"]
    assert stats == {"nchunks": 0, "total_length": 0} and lexemes == 0
