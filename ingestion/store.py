"""Documents and chunks in Postgres: all-or-nothing writes, listing, deletion, the ingestion log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from ingestion.chunk import Chunk
from supportbot.database import Database

_INSERT_CHUNK = """
INSERT INTO chunks (document_id, position, text, heading_path, page, collection, product, embedding, tsv)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s,
        setweight(to_tsvector('english', %s), 'A') || setweight(to_tsvector('english', %s), 'B'))
"""

# The external full-text engine's queue (migration 0010), in the transaction that changes the chunks. DO UPDATE,
# not DO NOTHING: it waits while the engine is applying this document's previous version, so that the newer
# one is queued again instead of being dropped with the older one's queue row.
_QUEUE_FOR_ENGINE = """
INSERT INTO fulltext_pending (document_id) VALUES (%s)
ON CONFLICT (document_id) DO UPDATE SET queued_at = clock_timestamp()
"""


def find_document(db: Database, collection: str, source: str) -> dict[str, Any] | None:
    with db.connection() as conn:
        return conn.execute(
            "SELECT id, content_hash, product, version FROM documents WHERE collection = %s AND source = %s",
            (collection, source),
        ).fetchone()


def write_document(
    db: Database,
    *,
    source: str,
    title: str,
    collection: str,
    product: str | None,
    kind: str,
    content_hash: str,
    size: int,
    chunks: Sequence[Chunk],
    vectors: Sequence[np.ndarray],
) -> tuple[int, int, str]:
    """Insert a document, or replace its previous version, with its chunks in one transaction.

    Readers see the old chunks or the new ones, never a mix and never none.
    Returns ``(document_id, version, "added" | "replaced")``.
    """
    if len(chunks) != len(vectors):
        raise ValueError("one vector per chunk is required")
    with db.connection() as conn, conn.transaction():
        existing = conn.execute(
            "SELECT id, version FROM documents WHERE collection = %s AND source = %s FOR UPDATE",
            (collection, source),
        ).fetchone()
        if existing:
            doc_id, version, outcome = existing["id"], existing["version"] + 1, "replaced"
            conn.execute("DELETE FROM chunks WHERE document_id = %s", (doc_id,))
            conn.execute(
                """UPDATE documents SET title = %s, product = %s, kind = %s, content_hash = %s, bytes = %s,
                       version = %s, status = 'active', updated_at = now() WHERE id = %s""",
                (title, product, kind, content_hash, size, version, doc_id),
            )
        else:
            row = conn.execute(
                """INSERT INTO documents (source, title, collection, product, kind, content_hash, bytes)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (source, title, collection, product, kind, content_hash, size),
            ).fetchone()
            doc_id, version, outcome = row["id"], 1, "added"
        with conn.cursor() as cur:
            cur.executemany(
                _INSERT_CHUNK,
                [
                    (doc_id, c.position, c.text, list(c.heading_path), c.page, collection, product,
                     vector, c.heading, c.text)
                    for c, vector in zip(chunks, vectors, strict=True)
                ],
            )
        conn.execute(_QUEUE_FOR_ENGINE, (doc_id,))
    return doc_id, version, outcome


def list_documents(db: Database, collection: str | None = None) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute(
            """SELECT d.id, d.source, d.title, d.collection, d.product, d.kind, d.version, d.status,
                      d.bytes, d.updated_at, count(c.id) AS chunks
               FROM documents d LEFT JOIN chunks c ON c.document_id = d.id
               WHERE %(collection)s::text IS NULL OR d.collection = %(collection)s
               GROUP BY d.id ORDER BY d.collection, d.source""",
            {"collection": collection},
        ).fetchall()


def delete_document(db: Database, document_id: int) -> dict[str, Any] | None:
    """Delete a document and its chunks; return what was deleted, or None if there was no such id."""
    with db.connection() as conn, conn.transaction():
        row = conn.execute(
            "DELETE FROM documents WHERE id = %s RETURNING id, source, collection, version", (document_id,)
        ).fetchone()
        if row:
            conn.execute(_QUEUE_FOR_ENGINE, (row["id"],))
            _log(conn, uuid.uuid4(), row["source"], row["collection"], "deleted", row["id"], row["version"])
    return row


def log_outcome(
    db: Database,
    run_id: uuid.UUID,
    source: str,
    collection: str,
    outcome: str,
    document_id: int | None = None,
    version: int | None = None,
    chunks: int | None = None,
    message: str | None = None,
    duration_ms: int | None = None,
) -> None:
    with db.connection() as conn:
        _log(conn, run_id, source, collection, outcome, document_id, version, chunks, message, duration_ms)


def _log(conn, run_id, source, collection, outcome, document_id=None, version=None, chunks=None,
         message=None, duration_ms=None) -> None:
    conn.execute(
        """INSERT INTO ingestion_log (run_id, source, collection, outcome, document_id, version, chunks,
                                      message, duration_ms)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (run_id, source, collection, outcome, document_id, version, chunks, message, duration_ms),
    )
