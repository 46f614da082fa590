-- Schema version 3: fenced attempts. Each hand-out of a task (assign, claim) is a new
-- attempt with its own number; calls that name an attempt which is no longer the task's
-- current one change nothing (StaleAttemptError). NULL (rows before this version, and
-- events) counts as 0: never handed out.
ALTER TABLE episodic_events ADD COLUMN IF NOT EXISTS attempt INTEGER;
