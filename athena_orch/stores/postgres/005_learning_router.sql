-- Schema version 5: the learning router. Outcomes per agent x task type and per agent x
-- capability (written by the queue with the agent figures), and each decision's policy and
-- the probability with which its agent was picked.
CREATE TABLE IF NOT EXISTS agent_skill_metrics (
    agent_id TEXT NOT NULL,
    skill_kind TEXT NOT NULL,        -- 'task_type' or 'capability'
    skill TEXT NOT NULL,
    completed BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    success_ms BIGINT NOT NULL DEFAULT 0,  -- summed duration of successful tasks
    last_updated TIMESTAMPTZ,
    PRIMARY KEY (agent_id, skill_kind, skill)
);
ALTER TABLE routing_decisions ADD COLUMN IF NOT EXISTS policy TEXT;
ALTER TABLE routing_decisions ADD COLUMN IF NOT EXISTS propensity DOUBLE PRECISION;
ALTER TABLE routing_decisions ADD COLUMN IF NOT EXISTS propensity_method TEXT;
ALTER TABLE routing_decisions ADD COLUMN IF NOT EXISTS propensities TEXT;  -- JSON object
