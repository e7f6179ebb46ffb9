-- The identity claims of a caller signed in with a JWT (`sub`, `preferred_username`,
-- `email`, `iss`) as a JSON object; '{}' for static tokens and the bot.
ALTER TABLE audit_log ADD COLUMN identity TEXT NOT NULL DEFAULT '{}';
