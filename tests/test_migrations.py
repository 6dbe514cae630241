"""Migrations on a real PostgreSQL: ordered, recorded in a version table, idempotent, safe in parallel."""

from concurrent.futures import ThreadPoolExecutor

import psycopg

from supportbot.migrate import migrations_dir, pending, upgrade


def test_upgrade_applies_everything_once_in_order(database_url):
    files = migrations_dir().glob("*.sql")
    ids = sorted(p.name.removesuffix(".sql") for p in files if not p.name.endswith(".rollback.sql"))
    assert pending(database_url) == ids
    assert upgrade(database_url) == ids
    assert upgrade(database_url) == []  # idempotent
    with psycopg.connect(database_url) as conn:
        recorded = [r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc")]
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    assert recorded == ids
    assert {"documents", "chunks", "ingestion_log", "lexeme_stats", "corpus_stats", "conversations", "messages",
            "message_passages", "feedback", "handoffs"} <= tables
    assert "vector" in extensions


def test_concurrent_upgrades_migrate_exactly_once(database_url):
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: upgrade(database_url), range(3)))
    assert sorted(len(r) for r in results)[:2] == [0, 0]  # one upgrader did the work
    assert pending(database_url) == []


def test_chunk_indexes_exist(database_url):
    upgrade(database_url)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'")
        indexes = {name: definition for name, definition in rows}
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes["chunks_embedding_hnsw"]
    # Migration 0009: a denser graph (recall@10 at 1M near-duplicate chunks, see the README).
    assert "m='32'" in indexes["chunks_embedding_hnsw"] and "ef_construction='128'" in indexes["chunks_embedding_hnsw"]
    assert "USING gin (tsv)" in indexes["chunks_tsv_gin"]
