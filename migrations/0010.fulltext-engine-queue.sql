-- Documents written or deleted since the external full-text engine (SUPPORTBOT_BM25=engine) last saw them:
-- ingestion/store.py queues a document in the transaction that changes its chunks, and the engine applies
-- the queue before each search (ingestion/fulltext_engine.py). No foreign key: a deleted document stays
-- queued until the engine has dropped its chunks. One row per document, however often it changed.
-- Every document already stored is queued, so that an engine switched on later starts complete.
-- depends: 0009.hnsw-denser-graph

CREATE TABLE fulltext_pending (
    document_id bigint PRIMARY KEY,
    queued_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX fulltext_pending_queued_at ON fulltext_pending (queued_at);
INSERT INTO fulltext_pending (document_id) SELECT id FROM documents;
