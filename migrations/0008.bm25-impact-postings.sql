-- BM25 with a cost bounded by the answer, not the table: every (lexeme, chunk) pair with its term
-- frequency, its chunk's length and its impact (the BM25 term weight without IDF, with the average
-- chunk length when written), indexed by lexeme in impact order. A query reads the top postings of
-- each of its words (an index range scan, LIMIT n per word), then scores the best candidates exactly.
-- Kept in step with chunks by statement triggers (no foreign key: TRUNCATE chunks must still work).
-- depends: 0007.conversation-owner-token

CREATE TABLE chunk_terms (
    chunk_id    bigint   NOT NULL,
    lexeme      text     NOT NULL,
    tf          smallint NOT NULL,   -- occurrences, a heading-path (weight A) one counted twice
    dl          smallint NOT NULL,   -- length(tsv) of the chunk
    impact      real     NOT NULL,   -- tf·(k1+1) / (tf + k1·(1 − b + b·dl/avgdl)), k1 1.2, b 0.5
    collection  text     NOT NULL,
    product     text,
    PRIMARY KEY (chunk_id, lexeme)
);

-- One chunk's postings: each lexeme of its tsvector with tf, length and impact at *avgdl*.
CREATE FUNCTION chunk_postings(tsv tsvector, avgdl double precision)
RETURNS TABLE (lexeme text, tf smallint, dl smallint, impact real) LANGUAGE sql IMMUTABLE AS $$
    SELECT u.lexeme, n.tf, length(tsv)::smallint,
           (n.tf * 2.2 / (n.tf + 1.2 * (0.5 + 0.5 * length(tsv) / avgdl)))::real
    FROM unnest(tsv) u
    CROSS JOIN LATERAL (
        SELECT least(cardinality(u.positions) + cardinality(array_positions(u.weights, 'A')), 32767)::smallint AS tf
    ) n
$$;

CREATE FUNCTION chunk_terms_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    avgdl double precision;
BEGIN
    -- chunks_stats_insert ran first (triggers fire in name order): the average includes these rows.
    SELECT greatest(total_length::double precision / greatest(nchunks, 1), 1) INTO avgdl FROM corpus_stats;
    INSERT INTO chunk_terms (chunk_id, lexeme, tf, dl, impact, collection, product)
    SELECT c.id, p.lexeme, p.tf, p.dl, p.impact, c.collection, c.product
    FROM new_chunks c CROSS JOIN LATERAL chunk_postings(c.tsv, avgdl) p;
    RETURN NULL;
END $$;

CREATE FUNCTION chunk_terms_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM chunk_terms t USING old_chunks c WHERE t.chunk_id = c.id;
    RETURN NULL;
END $$;

CREATE FUNCTION chunk_terms_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE chunk_terms;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_terms_insert AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_chunks FOR EACH STATEMENT EXECUTE FUNCTION chunk_terms_after_insert();
CREATE TRIGGER chunks_terms_delete AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_chunks FOR EACH STATEMENT EXECUTE FUNCTION chunk_terms_after_delete();
CREATE TRIGGER chunks_terms_truncate AFTER TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION chunk_terms_after_truncate();

-- The chunks already stored, with today's average length.
INSERT INTO chunk_terms (chunk_id, lexeme, tf, dl, impact, collection, product)
SELECT c.id, p.lexeme, p.tf, p.dl, p.impact, c.collection, c.product
FROM chunks c
CROSS JOIN LATERAL chunk_postings(
    c.tsv, (SELECT greatest(total_length::double precision / greatest(nchunks, 1), 1) FROM corpus_stats)) p;

-- A word's postings best first (equal impacts by chunk id, the order exact BM25 breaks ties in), for
-- all chunks and within one collection (the usual filter).
CREATE INDEX chunk_terms_by_impact ON chunk_terms (lexeme, impact DESC, chunk_id) INCLUDE (product);
CREATE INDEX chunk_terms_by_collection_impact ON chunk_terms (collection, lexeme, impact DESC, chunk_id)
    INCLUDE (product);
