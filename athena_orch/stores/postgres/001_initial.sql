-- Schema version 1 for PostgreSQL: the same tables as migrations/001_initial.sql (DuckDB).
-- The seed's episodic_events with every task column, the Phase 2
-- subscription table, the knowledge graph, agent figures and the routing decision log.
-- Times are UTC TIMESTAMPTZ with microseconds (the seed's INTEGER seconds are too coarse
-- for FIFO order, back-off and leases). Lists are JSON text.

CREATE SEQUENCE IF NOT EXISTS episodic_events_id_seq;

CREATE TABLE IF NOT EXISTS episodic_events (
    -- the episodic-memory columns
    id BIGINT PRIMARY KEY DEFAULT nextval('episodic_events_id_seq'),
    project_id INTEGER NOT NULL DEFAULT 0,
    session_id TEXT NOT NULL DEFAULT 'orchestration',
    timestamp TIMESTAMPTZ NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL,
    outcome TEXT,
    context_cwd TEXT,
    context_files TEXT,
    context_task TEXT,          -- for events about a task: that task's id
    context_phase TEXT,         -- task rows: the status it was created in; events: the new status
    duration_ms BIGINT,
    learned TEXT,
    confidence DOUBLE PRECISION,
    -- the seed's task columns (no DEFAULT 'pending': only task rows have a status)
    task_id TEXT UNIQUE,
    task_type TEXT,
    task_status TEXT,
    assigned_to TEXT,
    assigned_at TIMESTAMPTZ,
    requirements TEXT,
    dependencies TEXT,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    priority TEXT,
    result_task_id BIGINT,
    error_message TEXT,
    retry_count INTEGER,
    retry_until TIMESTAMPTZ,
    execution_duration_ms BIGINT,
    estimated_duration_ms BIGINT,
    success BOOLEAN,
    task_batch_id TEXT,
    -- ours: order, readiness, retries, leases, blocking, idempotency
    created_at TIMESTAMPTZ,
    priority_rank SMALLINT,
    waiting_on INTEGER,         -- dependencies not yet completed
    max_retries INTEGER,
    lease_until TIMESTAMPTZ,
    blocked_by TEXT,            -- the root task whose failure or cancellation blocked this one
    idempotency_key TEXT UNIQUE
);

CREATE INDEX IF NOT EXISTS idx_task_status ON episodic_events(task_status);
CREATE INDEX IF NOT EXISTS idx_assigned_to ON episodic_events(assigned_to);
CREATE INDEX IF NOT EXISTS idx_task_type ON episodic_events(task_type);
CREATE INDEX IF NOT EXISTS idx_context_task ON episodic_events(context_task);
-- The claim reads ready tasks in queue order; this keeps it off the finished rows.
CREATE INDEX IF NOT EXISTS idx_pending_order ON episodic_events(priority_rank, created_at, id)
    WHERE task_status = 'pending';

CREATE TABLE IF NOT EXISTS task_dependencies (
    task_id TEXT NOT NULL,      -- the task that waits
    depends_on TEXT NOT NULL,   -- the task it waits on
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX IF NOT EXISTS idx_depends_on ON task_dependencies(depends_on);

CREATE SEQUENCE IF NOT EXISTS event_subscriptions_id_seq;
CREATE TABLE IF NOT EXISTS event_subscriptions (
    id BIGINT PRIMARY KEY DEFAULT nextval('event_subscriptions_id_seq'),
    agent_id TEXT NOT NULL,
    event_pattern TEXT NOT NULL,
    handler_url TEXT,
    pattern_type TEXT DEFAULT 'regex',
    is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL,
    last_triggered TIMESTAMPTZ,
    trigger_count INTEGER DEFAULT 0,
    UNIQUE (agent_id, event_pattern)
);

CREATE TABLE IF NOT EXISTS graph_entities (
    entity_id TEXT PRIMARY KEY,     -- '<kind>:<name>'
    kind TEXT NOT NULL,             -- 'agent' or 'capability'
    name TEXT NOT NULL,
    properties TEXT NOT NULL,       -- JSON object
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS graph_relations (
    source_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source_id, target_id, relation_type)
);

CREATE TABLE IF NOT EXISTS agent_metrics (
    agent_id TEXT PRIMARY KEY,
    total_completed BIGINT NOT NULL DEFAULT 0,
    total_failed BIGINT NOT NULL DEFAULT 0,
    total_success_ms BIGINT NOT NULL DEFAULT 0,  -- summed duration of successful tasks
    last_updated TIMESTAMPTZ
);

CREATE SEQUENCE IF NOT EXISTS routing_decisions_id_seq;
CREATE TABLE IF NOT EXISTS routing_decisions (
    decision_id BIGINT PRIMARY KEY DEFAULT nextval('routing_decisions_id_seq'),
    decided_at TIMESTAMPTZ NOT NULL,
    task_id TEXT,
    requirements TEXT NOT NULL,     -- JSON list
    candidates TEXT NOT NULL,       -- JSON list, best first
    scores TEXT NOT NULL,           -- JSON object agent -> score
    components TEXT NOT NULL,       -- JSON object agent -> {component: value, load, capacity}
    selected_agent TEXT,
    weights TEXT NOT NULL,          -- JSON object
    reason TEXT NOT NULL,
    source TEXT NOT NULL            -- route_task, decide or route_batch
);

-- Change counters: in-memory graphs compare theirs with these before answering.
CREATE TABLE IF NOT EXISTS store_versions (
    name TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO store_versions VALUES ('agents', 0), ('dag', 0) ON CONFLICT DO NOTHING;
