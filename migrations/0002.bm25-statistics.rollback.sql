DROP TRIGGER IF EXISTS chunks_stats_insert ON chunks;
DROP TRIGGER IF EXISTS chunks_stats_delete ON chunks;
DROP FUNCTION IF EXISTS chunks_stats_after_insert();
DROP FUNCTION IF EXISTS chunks_stats_after_delete();
DROP TABLE IF EXISTS lexeme_stats;
DROP TABLE IF EXISTS corpus_stats;
