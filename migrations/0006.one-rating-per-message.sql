-- One rating per answer: a customer's second vote replaces the first (the API upserts), and a script
-- can no longer stack hundreds of ratings on one message. Earlier duplicates keep their latest row.
-- depends: 0005.bm25-statistics-truncate

DELETE FROM feedback f
USING feedback newer
WHERE newer.message_id = f.message_id
  AND (newer.created_at, newer.id) > (f.created_at, f.id);

CREATE UNIQUE INDEX feedback_one_per_message ON feedback (message_id);
