-- Schema version 4: task names. An optional human-readable name for a task (a batch
-- record's `key` when no name is given); NULL for tasks without one and for events.
ALTER TABLE episodic_events ADD COLUMN IF NOT EXISTS name TEXT;
