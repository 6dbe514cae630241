-- Conversation ownership: a new conversation gets a server-chosen id and a secret token, returned once
-- to whoever started it; only the token's SHA-256 is kept. Reading, continuing, rating or handing off
-- a conversation through the API needs the token. Earlier rows have none: the API cannot reach them.
-- depends: 0006.one-rating-per-message

ALTER TABLE conversations ADD COLUMN token_hash bytea;
