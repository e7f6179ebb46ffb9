-- Flap damping: since when the dispatcher holds an alert's notifications because it
-- changed state more than flap.max_transitions times in flap.window (NULL: stable).
-- Set by the leader's dispatcher only; writers never touch it.
ALTER TABLE alerts ADD COLUMN flapping_since_ms BIGINT;
