DROP INDEX IF EXISTS feedback_one_per_message;
