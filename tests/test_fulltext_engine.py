"""BM25 in an external full-text engine (SUPPORTBOT_BM25=engine): a real Sphinx 2.2 server (Debian's
sphinxsearch, SphinxQL over the MySQL protocol, as Manticore Search in docker-compose.yml) started from the
repository's own index definition, deploy/fulltext-engine.conf."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from ingestion.fulltext_engine import BM25, EngineError, EngineUrl, FulltextEngine, encode_lexeme, wait_until_ready
from ingestion.search import BM25_B, BM25_K1, Searcher
from ingestion.store import delete_document
from supportbot.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
MISSING = "searchd not installed: apt-get install -y sphinxsearch"
pytestmark = pytest.mark.skipif(not shutil.which("searchd") and not os.environ.get("CI"), reason=MISSING)

QUESTIONS = ["How do I reset my router to factory settings?", "is WPA3 supported?", "guest network for visitors",
             "what does the amber light mean", "firmware update takes how long", "parental controls bedtime"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def engine_server(tmp_path_factory) -> Iterator[str]:
    searchd = shutil.which("searchd")
    if not searchd:
        pytest.fail(f"{MISSING} (CI must run the engine tests; scripts/test.sh installs it as root)")
    data = tmp_path_factory.mktemp("fulltext-engine")
    port = _free_port()
    config = (ROOT / "deploy" / "fulltext-engine.conf").read_text()
    assert "/var/lib/manticore" in config and "listen = 9306:mysql41" in config
    config = config.replace("/var/lib/manticore", str(data)).replace(
        "listen = 9306:mysql41", f"listen = 127.0.0.1:{port}:mysql41")
    (data / "engine.conf").write_text(config)
    proc = subprocess.Popen([searchd, "--config", str(data / "engine.conf"), "--nodetach"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=data)
    url = f"sphinxql://127.0.0.1:{port}/supportbot_chunks"
    try:
        wait_until_ready(FulltextEngine(url), timeout_s=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def engine(engine_server: str) -> FulltextEngine:
    engine = FulltextEngine(engine_server)
    engine.execute("TRUNCATE RTINDEX supportbot_chunks")  # each test has a fresh database: chunk ids restart
    return engine


def _engine_ids(engine: FulltextEngine) -> set[int]:
    return {r[0] for r in engine.execute("SELECT id FROM supportbot_chunks LIMIT 100000 OPTION max_matches=100000")}


def _chunk_ids(db) -> set[int]:
    with db.connection() as conn:
        return {r["id"] for r in conn.execute("SELECT id FROM chunks")}


def _queued(db) -> int:
    with db.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM fulltext_pending").fetchone()["n"]


def _text_ranking(searcher: Searcher, question: str, **filters: str) -> list[int]:
    hits = searcher.search(question, k=20, **filters)
    return [h.chunk_id for h in sorted((h for h in hits if h.text_rank), key=lambda h: h.text_rank)]


def test_lexemes_become_tokens_the_engine_keeps_whole():
    assert encode_lexeme("router") == "router" and encode_lexeme("wpa3") == "wpa3"
    for odd in ("wi-fi", "2.4", "café", "x" * 41):
        token = encode_lexeme(odd)
        assert token.startswith("_") and token[1:].isalnum() and len(token) == 25
    assert encode_lexeme("wi-fi") != encode_lexeme("wi.fi")


def test_engine_url_errors_name_the_setting():
    assert EngineUrl.parse("sphinxql://search:9312/kb") == EngineUrl("search", 9312, "kb")
    for bad in ("mysql://h:9306/kb", "sphinxql://h:9306/", "sphinxql://h:9306/kb;drop"):
        with pytest.raises(ValueError, match="SUPPORTBOT_BM25_ENGINE_URL"):
            EngineUrl.parse(bad)


def test_engine_search_ranks_like_bm25_and_follows_every_write(sample_kb, ingestor, db, embedder, engine,
                                                               manual_md):
    searcher = Searcher(db, embedder, bm25="engine", engine=engine)
    exact = Searcher(db, embedder, bm25="exact")
    assert _queued(db) == len(sample_kb) and _engine_ids(engine) == set()
    top = searcher.search(QUESTIONS[0], k=3)[0]  # applies the queue first
    assert _queued(db) == 0 and _engine_ids(engine) == _chunk_ids(db)
    assert top.heading_path[-1] == "Factory reset" and top.text_rank == 1
    # The engine's candidates (its best 160 by BM25F: every matching chunk of this small KB) scored by exact
    # BM25: exact BM25's ranking, with and without filters.
    filters = {"collection": "sample", "product": "aurora-x2"}
    for question in QUESTIONS:
        assert _text_ranking(searcher, question) == _text_ranking(exact, question), question
        assert _text_ranking(searcher, question, **filters) == _text_ranking(exact, question, **filters), question
    assert _text_ranking(searcher, QUESTIONS[0], collection="other") == []
    assert _text_ranking(searcher, QUESTIONS[0], product="another-product") == []
    # The engine's candidates alone (partial BM25 from each word's best postings): the best chunk is exact
    # BM25's here too.
    with db.connection() as conn:
        for question in QUESTIONS:
            params = searcher.statement_params(conn, question, np.zeros(384), 20, None, None)
            terms = list(zip(params["match_lexemes"], params["match_idfs"], strict=True))
            bm25 = BM25(params["k1"], params["b"], params["avgdl"])
            assert engine.rank(terms, 20, bm25)[0] == _text_ranking(exact, question)[0], question

    # A new document, a new version of it, its deletion: each is in the engine by the next search.
    doc = ingestor.ingest_file(manual_md)
    assert _queued(db) == 1
    searcher.search("fan", k=3)
    assert _engine_ids(engine) == _chunk_ids(db) and _queued(db) == 0
    manual_md.write_text(manual_md.read_text() + "\n## Storage\n\nStore the fan upright in its box over winter.\n")
    assert ingestor.ingest_file(manual_md).outcome == "replaced"
    hits = searcher.search("store the fan upright over winter", k=3)
    assert _engine_ids(engine) == _chunk_ids(db)
    assert hits[0].text_rank == 1 and "upright" in hits[0].text
    delete_document(db, doc.document_id)
    searcher.search("fan", k=3)
    assert _engine_ids(engine) == _chunk_ids(db) and _queued(db) == 0
    # A chunk the engine still holds after Postgres deleted it (say, written back by hand) is never a hit.
    engine.execute("REPLACE INTO supportbot_chunks (id, body, document_id, collection, product) "
                   "VALUES (999999, 'factori reset reset reset', 424242, 'sample', 'aurora-x2')")
    assert 999999 in engine.rank([("factori", 1.0), ("reset", 1.0)], 10, BM25(BM25_K1, BM25_B, 50.0))
    assert _text_ranking(searcher, QUESTIONS[0]) == _text_ranking(exact, QUESTIONS[0])


def _metric(operation: str) -> float:
    return REGISTRY.get_sample_value("supportbot_fulltext_engine_errors_total", {"operation": operation}) or 0.0


def test_an_unreachable_engine_falls_back_to_impact_bm25_and_keeps_the_queue(sample_kb, db, embedder, engine,
                                                                             caplog):
    down = FulltextEngine(f"sphinxql://127.0.0.1:{_free_port()}/supportbot_chunks", timeout_s=0.5)
    impact = Searcher(db, embedder, bm25="impact")
    before = _metric("sync")
    for question in QUESTIONS[:3]:
        assert _text_ranking(Searcher(db, embedder, bm25="engine", engine=down), question) == \
            _text_ranking(impact, question)
    assert _metric("sync") == before + 3
    # Once it failed, the engine is left alone for a while: searches fall back at once.
    with pytest.raises(EngineError, match="failed less than 5 s ago"):
        down.count()
    assert "uses impact BM25 in Postgres" in caplog.text
    assert _queued(db) == len(sample_kb)  # nothing lost: the engine gets it all once it answers
    Searcher(db, embedder, bm25="engine", engine=engine).search(QUESTIONS[0])
    assert _queued(db) == 0 and _engine_ids(engine) == _chunk_ids(db)


def test_a_write_during_an_apply_is_queued_again(sample_kb, ingestor, db, engine, manual_md, database_url):
    """The engine applies a document while a new version of it is written: the new version's queue row waits
    for the apply to finish and stays queued (it is not dropped with the old version's row)."""
    doc = ingestor.ingest_file(manual_md)
    engine.apply_pending(db)
    manual_md.write_text(manual_md.read_text() + "\n## Storage\n\nStore the fan upright.\n")
    with db.connection() as conn, conn.transaction():
        conn.execute("INSERT INTO fulltext_pending (document_id) VALUES (%s)", (doc.document_id,))
    with psycopg.connect(database_url) as applying:  # an apply in progress: the queue row locked
        assert applying.execute("SELECT document_id FROM fulltext_pending FOR UPDATE SKIP LOCKED").fetchall()
        writer = threading.Thread(target=ingestor.ingest_file, args=(manual_md,))
        writer.start()
        time.sleep(1.0)
        assert writer.is_alive()  # waiting on the queue row the apply holds
        applying.execute("DELETE FROM fulltext_pending")
        applying.commit()
    writer.join(30)
    assert _queued(db) == 1
    engine.apply_pending(db)
    assert _engine_ids(engine) == _chunk_ids(db)


def test_searches_during_a_rebuild_rank_in_postgres_and_leave_the_queue(sample_kb, db, embedder, engine,
                                                                         database_url):
    from ingestion.fulltext_engine import REBUILD_LOCK

    searcher, impact = Searcher(db, embedder, bm25="engine", engine=engine), Searcher(db, embedder)
    with psycopg.connect(database_url, autocommit=True) as rebuilding:  # what `fulltext reindex` holds
        rebuilding.execute("SELECT pg_advisory_lock(%s)", (REBUILD_LOCK,))
        assert _text_ranking(searcher, QUESTIONS[0]) == _text_ranking(impact, QUESTIONS[0])
        assert _queued(db) == len(sample_kb) and _engine_ids(engine) == set()
        rebuilding.execute("SELECT pg_advisory_unlock(%s)", (REBUILD_LOCK,))
    searcher.search(QUESTIONS[0])
    assert _queued(db) == 0 and _engine_ids(engine) == _chunk_ids(db)


def test_reindex_and_status_commands(sample_kb, db, engine, engine_server, database_url, monkeypatch):
    from bot.cli import app

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPPORTBOT_BM25_ENGINE_URL", engine_server)
    get_settings.cache_clear()
    engine.execute("REPLACE INTO supportbot_chunks (id, body, document_id, collection, product) "
                   "VALUES (999999, 'stale', 1, 'x', '')")
    result = CliRunner().invoke(app, ["fulltext", "reindex"])
    assert result.exit_code == 0, result.output
    chunks = _chunk_ids(db)
    assert f"indexed {len(chunks)} chunks" in result.output
    assert _engine_ids(engine) == chunks and _queued(db) == 0
    status = CliRunner().invoke(app, ["fulltext", "status"])
    assert status.exit_code == 0 and f"{len(chunks)} in the engine, {len(chunks)} in Postgres" in status.output
    monkeypatch.setenv("SUPPORTBOT_BM25_ENGINE_URL", f"sphinxql://127.0.0.1:{_free_port()}/supportbot_chunks")
    get_settings.cache_clear()
    down = CliRunner().invoke(app, ["fulltext", "status"])
    assert down.exit_code == 1 and "cannot reach the full-text engine" in down.output
    get_settings.cache_clear()


def test_search_command_uses_the_configured_engine(sample_kb, engine, engine_server, database_url, monkeypatch):
    from bot.cli import app

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPPORTBOT_BM25", "engine")
    monkeypatch.setenv("SUPPORTBOT_BM25_ENGINE_URL", engine_server)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["search", QUESTIONS[0], "--json"])
        assert result.exit_code == 0, result.output
        assert _engine_ids(engine)  # the search applied the queue: it went through the engine
        monkeypatch.setenv("SUPPORTBOT_BM25_ENGINE_URL", "mysql://search/kb")
        get_settings.cache_clear()
        bad = CliRunner().invoke(app, ["search", QUESTIONS[0]])
        assert bad.exit_code == 1 and "SUPPORTBOT_BM25_ENGINE_URL must look like sphinxql://" in bad.output
    finally:
        get_settings.cache_clear()
