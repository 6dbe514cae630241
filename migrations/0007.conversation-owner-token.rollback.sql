ALTER TABLE conversations DROP COLUMN IF EXISTS token_hash;
