-- TRUNCATE fires no row or statement DELETE trigger: reset the BM25 statistics with it.
-- depends: 0004.adapters

CREATE FUNCTION chunks_stats_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE corpus_stats SET nchunks = 0, total_length = 0;
    DELETE FROM lexeme_stats;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_stats_truncate AFTER TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_stats_after_truncate();
