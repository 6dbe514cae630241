DROP TRIGGER IF EXISTS chunks_stats_truncate ON chunks;
DROP FUNCTION IF EXISTS chunks_stats_after_truncate();
