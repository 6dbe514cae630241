-- The knowledge store: documents, their chunks (vector + full text), and the ingestion log.
-- depends:

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE documents (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        text        NOT NULL,             -- file name as uploaded
    title         text        NOT NULL,
    collection    text        NOT NULL DEFAULT 'default',
    product       text,
    kind          text        NOT NULL DEFAULT 'manual' CHECK (kind IN ('manual', 'faq')),
    content_hash  text        NOT NULL,             -- sha256 of the file's bytes
    bytes         bigint      NOT NULL,
    version       integer     NOT NULL DEFAULT 1,
    status        text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection, source)
);

CREATE TABLE chunks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id   bigint      NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    position      integer     NOT NULL,
    text          text        NOT NULL,
    heading_path  text[]      NOT NULL DEFAULT '{}',
    page          integer,
    -- Copied from the document so that filtered vector search stays on one table
    -- (pgvector's iterative index scan applies the filter during the scan).
    collection    text        NOT NULL,
    product       text,
    embedding     vector(384) NOT NULL,
    tsv           tsvector    NOT NULL,
    UNIQUE (document_id, position)
);

CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX chunks_tsv_gin ON chunks USING gin (tsv);
CREATE INDEX chunks_collection_product ON chunks (collection, product);

CREATE TABLE ingestion_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        uuid        NOT NULL,
    source        text        NOT NULL,
    collection    text        NOT NULL,
    outcome       text        NOT NULL CHECK (outcome IN ('added', 'replaced', 'unchanged', 'failed', 'deleted')),
    document_id   bigint,                            -- no FK: the log outlives deleted documents
    version       integer,
    chunks        integer,
    message       text,
    duration_ms   integer,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ingestion_log_run ON ingestion_log (run_id);
