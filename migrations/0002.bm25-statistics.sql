-- Corpus statistics for BM25 ranking of the full-text side of hybrid search
-- (Postgres' ts_rank has no inverse document frequency). Kept exact by triggers on chunks.
-- depends: 0001.knowledge-store

CREATE TABLE lexeme_stats (
    lexeme  text    PRIMARY KEY,
    ndoc    integer NOT NULL            -- chunks whose tsv holds the lexeme
);

CREATE TABLE corpus_stats (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),   -- exactly one row
    nchunks       bigint  NOT NULL DEFAULT 0,
    total_length  bigint  NOT NULL DEFAULT 0                     -- sum of length(tsv)
);

INSERT INTO corpus_stats (nchunks, total_length)
SELECT count(*), coalesce(sum(length(tsv)), 0) FROM chunks;

INSERT INTO lexeme_stats (lexeme, ndoc)
SELECT u.lexeme, count(*) FROM chunks c, unnest(c.tsv) u GROUP BY u.lexeme;

-- corpus_stats is updated first: its row lock serialises concurrent writers of statistics,
-- so the lexeme upserts below can never deadlock.
CREATE FUNCTION chunks_stats_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE corpus_stats
       SET nchunks = nchunks + (SELECT count(*) FROM new_chunks),
           total_length = total_length + (SELECT coalesce(sum(length(tsv)), 0) FROM new_chunks);
    INSERT INTO lexeme_stats (lexeme, ndoc)
    SELECT u.lexeme, count(*) FROM new_chunks c, unnest(c.tsv) u GROUP BY u.lexeme
    ON CONFLICT (lexeme) DO UPDATE SET ndoc = lexeme_stats.ndoc + excluded.ndoc;
    RETURN NULL;
END $$;

CREATE FUNCTION chunks_stats_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE corpus_stats
       SET nchunks = nchunks - (SELECT count(*) FROM old_chunks),
           total_length = total_length - (SELECT coalesce(sum(length(tsv)), 0) FROM old_chunks);
    UPDATE lexeme_stats s SET ndoc = s.ndoc - gone.n
      FROM (SELECT u.lexeme, count(*) AS n FROM old_chunks c, unnest(c.tsv) u GROUP BY u.lexeme) gone
     WHERE s.lexeme = gone.lexeme;
    DELETE FROM lexeme_stats WHERE ndoc <= 0;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_stats_insert AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_chunks FOR EACH STATEMENT EXECUTE FUNCTION chunks_stats_after_insert();
CREATE TRIGGER chunks_stats_delete AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_chunks FOR EACH STATEMENT EXECUTE FUNCTION chunks_stats_after_delete();
