DROP TABLE IF EXISTS fulltext_pending;
