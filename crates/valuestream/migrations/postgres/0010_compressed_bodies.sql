-- Raw bodies are stored compressed (a 16 KB GitHub payload takes about
-- 3 KB): `body_encoding` says how. Rows stored before this migration keep
-- their bodies as they came (`identity`).
ALTER TABLE deliveries ADD COLUMN body_encoding TEXT NOT NULL DEFAULT 'identity';
