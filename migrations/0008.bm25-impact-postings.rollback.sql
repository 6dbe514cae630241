DROP TRIGGER IF EXISTS chunks_terms_insert ON chunks;
DROP TRIGGER IF EXISTS chunks_terms_delete ON chunks;
DROP TRIGGER IF EXISTS chunks_terms_truncate ON chunks;
DROP FUNCTION IF EXISTS chunk_terms_after_insert();
DROP FUNCTION IF EXISTS chunk_terms_after_delete();
DROP FUNCTION IF EXISTS chunk_terms_after_truncate();
DROP FUNCTION IF EXISTS chunk_postings(tsvector, double precision);
DROP TABLE IF EXISTS chunk_terms;
