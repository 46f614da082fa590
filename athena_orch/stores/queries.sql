-- Every statement athena-orch runs, each under a "-- name: <name>" header with a line on
-- what it does. Values are bound as $parameters; frame inserts read the registered
-- DataFrame "incoming". Loaded by athena_orch/stores/sql.py.

-- ---------------------------------------------------------------- schema and versions

-- name: session_setup
-- Times come back as UTC; no progress bar printed into the caller's terminal. A
-- checkpoint (which rewrites changed row groups and indexes: 0.3-1.3 s on a 100k-task
-- file) after every 128 MB of WAL rather than DuckDB's 16 MB; a 100k-task lifecycle
-- writes ~190 MB, and replaying 128 MB after a crash takes ~2 s. One thread per
-- statement: the queue's statements are small, and on the 2-core machine the one-at-a-
-- time lifecycle ran 30% faster and the bulk path 15% faster (a million-row to_frame
-- the same).
SET TimeZone = 'UTC'; SET enable_progress_bar = false; SET checkpoint_threshold = '128MB';
SET threads = 1;

-- name: migrations_lock
-- Only one process migrates at a time (DuckDB has one writer process anyway).
SELECT 1;

-- name: migrations_table
-- The applied schema migrations.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL
);

-- name: migrations_applied
SELECT version FROM schema_migrations ORDER BY version;

-- name: migration_record
INSERT INTO schema_migrations VALUES ($version, $name, $now);

-- name: store_version
-- Change counter of an in-memory graph ('agents' or 'dag').
SELECT version FROM store_versions WHERE name = $name;

-- name: store_version_bump
UPDATE store_versions SET version = version + 1 WHERE name = $name;

-- name: column_types
-- Column name -> SQL type of one of our tables (PostgreSQL's COPY writes integers by it).
SELECT column_name, data_type FROM information_schema.columns
WHERE table_name = $table AND table_schema = current_schema();

-- ---------------------------------------------------------------- wake-ups

-- name: work_notify
-- Tell other processes that work may be ready. PostgreSQL's (postgres/queries.sql):
-- DuckDB has one writer process, which wakes its own waiters in memory, and never runs it.
SELECT NULL;

-- name: work_listen
-- PostgreSQL's: start hearing work_notify (DuckDB never runs it).
SELECT NULL;

-- name: current_schema
SELECT current_schema();

-- ---------------------------------------------------------------- tasks: writes

-- name: tasks_insert
-- New task rows in bulk (event_type 'task'): each is the event of its own creation.
INSERT INTO episodic_events BY NAME SELECT * FROM incoming;

-- name: tasks_insert_rows
-- The same for a few rows, bound as lists (one per column, of equal length): cheaper
-- than scanning a registered frame (one row: 4 ms against 7).
INSERT INTO episodic_events (timestamp, created_at, event_type, retry_count, content,
    outcome, task_id, task_type, task_status, context_phase, requirements, dependencies,
    priority, estimated_duration_ms, task_batch_id, priority_rank, waiting_on, max_retries,
    blocked_by, error_message, idempotency_key, name)
SELECT $now::TIMESTAMPTZ, $now::TIMESTAMPTZ, 'task', 0, unnest($content::VARCHAR[]),
       unnest($outcome::VARCHAR[]), unnest($task_id::VARCHAR[]),
       unnest($task_type::VARCHAR[]), unnest($task_status::VARCHAR[]),
       unnest($context_phase::VARCHAR[]), unnest($requirements::VARCHAR[]),
       unnest($dependencies::VARCHAR[]), unnest($priority::VARCHAR[]),
       unnest($estimated_duration_ms::BIGINT[]), unnest($task_batch_id::VARCHAR[]),
       unnest($priority_rank::SMALLINT[]), unnest($waiting_on::INTEGER[]),
       unnest($max_retries::INTEGER[]), unnest($blocked_by::VARCHAR[]),
       unnest($error_message::VARCHAR[]), unnest($idempotency_key::VARCHAR[]),
       unnest($name::VARCHAR[]);

-- name: transitions_insert
-- Task transition events (lists of equal length).
INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task, context_phase)
SELECT $now, 'task_transition', unnest($contents::VARCHAR[]), unnest($statuses::VARCHAR[]),
       unnest($task_ids::VARCHAR[]), unnest($statuses::VARCHAR[]);

-- name: transitions_insert_frame
-- The same for many transitions at once, from the frame "incoming" (timestamp,
-- event_type, content, outcome, context_task, context_phase), in frame order.
INSERT INTO episodic_events BY NAME SELECT * FROM incoming;

-- name: dependencies_insert
INSERT INTO task_dependencies BY NAME SELECT * FROM incoming;

-- name: task_assign
-- pending -> assigned, for a task whose dependencies are all completed: a new attempt.
UPDATE episodic_events
SET task_status = 'assigned', assigned_to = $agent_id, assigned_at = $now, lease_until = $lease_until,
    attempt = coalesce(attempt, 0) + 1
WHERE task_id = $task_id AND task_status = 'pending' AND waiting_on = 0
RETURNING *;

-- name: agent_capacity
-- How many tasks an agent may hold at once (its max_concurrent_tasks while active, 0
-- while paused); no row when it is not registered. Read after a pick that found nothing,
-- to tell an unknown agent from one with nothing to do; PostgreSQL's also locks the
-- agent's row before a claim (see postgres/queries.sql).
SELECT CASE WHEN json_extract(properties, '$.active')::BOOLEAN
            THEN json_extract(properties, '$.max_concurrent_tasks')::INTEGER ELSE 0 END
FROM graph_entities WHERE entity_id = $agent_key;

-- name: tasks_claim_pick
-- The best ready tasks an agent has every capability for (priority, then age, then
-- insertion), up to $limit and its free capacity (its max_concurrent_tasks while active,
-- less its load), best first, as task rows (times as microseconds since 1970: DuckDB
-- hands out integers ten times faster than datetimes). The caller hands them out with
-- tasks_claim_mark right after: DuckDB has one writer and the caller holds the
-- connection, PostgreSQL locks the rows it picks. For speed, the order is found on three
-- columns before the rows are read, and each distinct requirements text is parsed once.
SELECT e.task_id, e.content, e.task_type, e.task_status, e.priority,
       e.requirements, e.dependencies, e.assigned_to,
       epoch_us(e.created_at) AS created_at,
       epoch_us(e.assigned_at) AS assigned_at,
       epoch_us(e.started_at) AS started_at,
       epoch_us(e.completed_at) AS completed_at,
       epoch_us(e.retry_until) AS retry_until,
       epoch_us(e.lease_until) AS lease_until,
       e.error_message, e.retry_count, e.execution_duration_ms, e.max_retries,
       e.estimated_duration_ms, e.result_task_id, e.blocked_by, e.task_batch_id,
       e.idempotency_key, e.success, e.attempt, e.name
FROM (
    SELECT id, row_number() OVER (ORDER BY priority_rank, created_at, id) AS position
    FROM (
        SELECT t.id, t.priority_rank, t.created_at
        FROM episodic_events t
        WHERE t.task_status = 'pending' AND t.waiting_on = 0
          AND (t.retry_until IS NULL OR t.retry_until <= $now)
          AND ($task_types::VARCHAR[] IS NULL
               OR list_contains($task_types::VARCHAR[], t.task_type))
          AND t.requirements IN (
                SELECT r FROM (SELECT DISTINCT requirements AS r FROM episodic_events
                               WHERE task_status = 'pending')
                WHERE list_has_all(
                        (SELECT coalesce(list(target_id), []) FROM graph_relations
                         WHERE source_id = $agent_key AND relation_type = $relation_type),
                        list_transform(from_json(r, '["VARCHAR"]'),
                                       lambda x: $capability_prefix || x)))
        ORDER BY t.priority_rank, t.created_at, t.id
        LIMIT $limit)) p
JOIN episodic_events e ON e.id = p.id
WHERE p.position <= (
    SELECT CASE WHEN json_extract(properties, '$.active')::BOOLEAN
                THEN json_extract(properties, '$.max_concurrent_tasks')::INTEGER ELSE 0 END
           - (SELECT count(*) FROM episodic_events
              WHERE assigned_to = $agent_id AND task_status IN ('assigned', 'running'))
    FROM graph_entities WHERE entity_id = $agent_key)
ORDER BY p.position;

-- name: tasks_claim_mark
-- Hand the picked pending tasks to the agent as $status ('assigned', or 'running' to
-- start them at once), each as a new attempt, and write their history ('claimed', then
-- 'started'), in one statement. No RETURNING on the update: in DuckDB that turns it into
-- a delete and an insert of every row (5,000 rows: 120 ms instead of 14); the caller
-- knows the rows from tasks_claim_pick. The update reads the history insert, as DuckDB
-- 2.0.1 binds the columns of a data-modifying CTE that nothing reads wrongly.
WITH logged AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now, 'task_transition',
           json_object('from_status', s.from_status, 'to_status', s.to_status,
                       'agent_id', $agent_id, 'detail', s.detail)::VARCHAR,
           s.to_status, t.task_id, s.to_status
    FROM (SELECT unnest($task_ids::VARCHAR[]) AS task_id,
                 generate_subscripts($task_ids::VARCHAR[], 1) AS position) t,
         (VALUES (1, 'pending', 'assigned', 'claimed'),
                 (2, 'assigned', 'running', 'started')) s(step, from_status, to_status, detail)
    WHERE s.step = 1 OR $status = 'running'
    ORDER BY s.step, t.position
    RETURNING id)
UPDATE episodic_events
SET task_status = $status, assigned_to = $agent_id, assigned_at = $now,
    started_at = CASE WHEN $status = 'running' THEN $now END, lease_until = $lease_until,
    attempt = coalesce(attempt, 0) + 1
WHERE task_id IN (SELECT unnest($task_ids::VARCHAR[])) AND task_status = 'pending'
  AND (SELECT count(*) FROM logged) > 0;

-- name: task_start
-- assigned -> running with its history, in one statement, if the caller's attempt (agent
-- and attempt number, each NULL for any) is the task's current one; returns the task.
-- The final SELECT reads every write (see tasks_claim).
WITH started AS (
    UPDATE episodic_events
    SET task_status = 'running', started_at = $now, lease_until = $lease_until
    WHERE task_id = $task_id AND task_status = 'assigned'
      AND ($agent_id::TEXT IS NULL OR assigned_to = $agent_id::TEXT)
      AND ($attempt::INTEGER IS NULL OR coalesce(attempt, 0) = $attempt::INTEGER)
    RETURNING *),
logged AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now, 'task_transition',
           json_object('from_status', 'assigned', 'to_status', 'running',
                       'agent_id', assigned_to, 'detail', 'started')::VARCHAR,
           'running', task_id, 'running'
    FROM started
    RETURNING id)
SELECT *, (SELECT count(*) FROM logged) AS logged FROM started;

-- name: tasks_lock
-- The task rows of $task_ids that exist (times as in tasks_claim_pick), before the caller
-- changes them in this transaction (PostgreSQL: FOR UPDATE, so no other process changes
-- them meanwhile).
SELECT task_id, content, task_type, task_status, priority, requirements, dependencies,
       assigned_to, epoch_us(created_at) AS created_at,
       epoch_us(assigned_at) AS assigned_at,
       epoch_us(started_at) AS started_at,
       epoch_us(completed_at) AS completed_at,
       epoch_us(retry_until) AS retry_until,
       epoch_us(lease_until) AS lease_until,
       error_message, retry_count, execution_duration_ms, max_retries, estimated_duration_ms,
       result_task_id, blocked_by, task_batch_id, idempotency_key, success, attempt, name
FROM episodic_events
WHERE task_id IN (SELECT unnest($task_ids::VARCHAR[]));

-- name: tasks_complete
-- running -> completed for the given tasks (read with tasks_lock and checked), in one
-- statement: each result becomes an event linked from its task, the task gets its
-- execution time, its history is written, the tasks waiting on it count one dependency
-- less, and the agents' figures (lists of equal length, in key order, as figures_record
-- takes them) count the successes. No RETURNING on the task update (see
-- tasks_claim_mark); the update reads every insert (the same DuckDB caveat).
WITH results AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now, 'task_result', unnest($results::VARCHAR[]), 'success',
           unnest($task_ids::VARCHAR[]), 'completed'
    RETURNING context_task AS task_id, id),
logged AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now, 'task_transition',
           json_object('from_status', 'running', 'to_status', 'completed',
                       'agent_id', agent_id, 'detail', 'completed')::VARCHAR,
           'completed', task_id, 'completed'
    FROM (SELECT unnest($task_ids::VARCHAR[]) AS task_id,
                 unnest($assignees::VARCHAR[]) AS agent_id)
    RETURNING id),
released AS (
    UPDATE episodic_events SET waiting_on = waiting_on - d.completed
    FROM (SELECT task_id, count(*) AS completed FROM task_dependencies
          WHERE depends_on IN (SELECT unnest($task_ids::VARCHAR[])) GROUP BY task_id) d
    WHERE episodic_events.task_id = d.task_id),
agent_figures AS (
    INSERT INTO agent_metrics
    SELECT unnest($agent_ids::VARCHAR[]), unnest($agent_completed::BIGINT[]), 0,
           unnest($agent_ms::BIGINT[]), $now
    ON CONFLICT (agent_id) DO UPDATE SET
        total_completed = least(agent_metrics.total_completed::HUGEINT
                                + excluded.total_completed, $cap),
        total_success_ms = least(agent_metrics.total_success_ms::HUGEINT
                                 + excluded.total_success_ms, $cap),
        last_updated = excluded.last_updated
    RETURNING agent_id),
skill_figures AS (
    INSERT INTO agent_skill_metrics
    SELECT unnest($skill_agents::VARCHAR[]), unnest($skill_kinds::VARCHAR[]),
           unnest($skills::VARCHAR[]), unnest($skill_completed::BIGINT[]), 0,
           unnest($skill_ms::BIGINT[]), $now
    ON CONFLICT (agent_id, skill_kind, skill) DO UPDATE SET
        completed = least(agent_skill_metrics.completed::HUGEINT + excluded.completed, $cap),
        success_ms = least(agent_skill_metrics.success_ms::HUGEINT + excluded.success_ms,
                           $cap),
        last_updated = excluded.last_updated
    RETURNING agent_id)
UPDATE episodic_events
SET task_status = 'completed', completed_at = $now, execution_duration_ms = i.duration_ms,
    success = TRUE, result_task_id = results.id, lease_until = NULL, outcome = 'success'
FROM (SELECT unnest($task_ids::VARCHAR[]) AS task_id,
             unnest($durations::BIGINT[]) AS duration_ms) i
JOIN results ON results.task_id = i.task_id
WHERE episodic_events.task_id = i.task_id AND episodic_events.task_status = 'running'
  AND (SELECT count(*) FROM logged) > 0 AND (SELECT count(*) FROM agent_figures) >= 0
  AND (SELECT count(*) FROM skill_figures) >= 0;

-- name: result_event_ids
-- The result event of each of the given tasks.
SELECT task_id, result_task_id FROM episodic_events
WHERE task_id IN (SELECT unnest($task_ids::VARCHAR[]));

-- name: tasks_fail_step
-- One failure step of active tasks (read in this transaction), in one statement: those of
-- $retry_ids back to pending with one retry used, their back-off and their error, those of
-- $fail_ids failed for good with their error, each only under the attempt the caller read
-- (a task another process requeued meanwhile is left alone), and the history events of
-- both ($task_ids, $statuses, $contents: lists of equal length). No RETURNING on the
-- updates (see tasks_claim_mark); the last update reads the history insert (the same
-- DuckDB caveat).
WITH logged AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now, 'task_transition', unnest($contents::VARCHAR[]),
           unnest($statuses::VARCHAR[]), unnest($task_ids::VARCHAR[]),
           unnest($statuses::VARCHAR[])
    RETURNING id),
retried AS (
    UPDATE episodic_events
    SET task_status = 'pending', assigned_to = NULL, assigned_at = NULL, started_at = NULL,
        lease_until = NULL, retry_count = retry_count + 1, retry_until = i.retry_until,
        error_message = i.error
    FROM (SELECT unnest($retry_ids::VARCHAR[]) AS task_id,
                 unnest($retry_attempts::INTEGER[]) AS attempt,
                 unnest($retry_untils::TIMESTAMPTZ[]) AS retry_until,
                 unnest($retry_errors::VARCHAR[]) AS error) i
    WHERE episodic_events.task_id = i.task_id
      AND episodic_events.task_status IN ('assigned', 'running')
      AND coalesce(episodic_events.attempt, 0) = i.attempt)
UPDATE episodic_events
SET task_status = 'failed', completed_at = $now, error_message = i.error, success = FALSE,
    lease_until = NULL, outcome = 'failure'
FROM (SELECT unnest($fail_ids::VARCHAR[]) AS task_id,
             unnest($fail_attempts::INTEGER[]) AS attempt,
             unnest($fail_errors::VARCHAR[]) AS error) i
WHERE episodic_events.task_id = i.task_id
  AND episodic_events.task_status IN ('assigned', 'running')
  AND coalesce(episodic_events.attempt, 0) = i.attempt
  AND (SELECT count(*) FROM logged) > 0;

-- name: task_cancel
UPDATE episodic_events
SET task_status = 'cancelled', completed_at = $now, error_message = $reason,
    lease_until = NULL, outcome = 'cancelled'
WHERE task_id = $task_id AND task_status IN ('pending', 'assigned', 'running', 'blocked')
RETURNING *;

-- name: tasks_block
-- Block those of the given tasks still pending, each because its root task failed or was
-- cancelled (lists of equal length: task, root, reason).
UPDATE episodic_events
SET task_status = 'blocked', blocked_by = i.root, error_message = i.reason, outcome = 'blocked'
FROM (SELECT unnest($task_ids::VARCHAR[]) AS task_id, unnest($roots::VARCHAR[]) AS root,
             unnest($reasons::VARCHAR[]) AS reason) i
WHERE episodic_events.task_id = i.task_id AND episodic_events.task_status = 'pending'
RETURNING episodic_events.task_id;

-- name: task_release
-- assigned/running -> pending without using a retry or waiting a back-off: the attempt
-- the caller read, handed back (a worker that stops), with its history event ($content),
-- in one statement; returns the task. The final SELECT reads every write (see
-- tasks_claim_mark).
WITH released AS (
    UPDATE episodic_events
    SET task_status = 'pending', assigned_to = NULL, assigned_at = NULL, started_at = NULL,
        lease_until = NULL, retry_until = NULL
    WHERE task_id = $task_id::VARCHAR AND task_status IN ('assigned', 'running')
      AND coalesce(attempt, 0) = $attempt::INTEGER
    RETURNING *),
logged AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now::TIMESTAMPTZ, 'task_transition', $content::VARCHAR, 'pending', task_id,
           'pending'
    FROM released
    RETURNING id)
SELECT *, (SELECT count(*) FROM logged) AS logged FROM released;

-- name: task_renew_lease
-- A new lease for the task, if the caller's attempt (NULLs: any) is its current one.
UPDATE episodic_events SET lease_until = $lease_until
WHERE task_id = $task_id AND task_status IN ('assigned', 'running')
  AND ($agent_id::TEXT IS NULL OR assigned_to = $agent_id::TEXT)
  AND ($attempt::INTEGER IS NULL OR coalesce(attempt, 0) = $attempt::INTEGER)
RETURNING task_id;

-- name: agent_renew_leases
UPDATE episodic_events SET lease_until = $lease_until
WHERE assigned_to = $agent_id AND task_status IN ('assigned', 'running')
RETURNING task_id;

-- ---------------------------------------------------------------- tasks: reads

-- name: task_get
-- One task row with its result text.
SELECT t.*, r.content AS result
FROM episodic_events t LEFT JOIN episodic_events r ON r.id = t.result_task_id
WHERE t.task_id = $task_id;

-- name: idempotency_keys_lock
-- Writers submitting one key queue up until the first has committed (DuckDB: its one
-- writer process and the connection lock do this already).
SELECT 1 WHERE $keys IS NOT NULL;

-- name: tasks_by_idempotency_keys
-- The tasks already created under any of $keys, with what they were created with.
SELECT idempotency_key, task_id, content, task_type, priority, requirements, dependencies,
       max_retries, estimated_duration_ms, name FROM episodic_events
WHERE idempotency_key IN (SELECT unnest($keys::VARCHAR[]));

-- name: task_states
-- Status and blocking root of the given tasks (those that exist).
SELECT task_id, task_status, blocked_by FROM episodic_events
WHERE task_id IN (SELECT unnest($task_ids::VARCHAR[]));

-- name: tasks_query
-- Task rows matching every given filter (NULL = any), in queue order.
SELECT t.*, r.content AS result
FROM episodic_events t LEFT JOIN episodic_events r ON r.id = t.result_task_id
WHERE t.task_id IS NOT NULL
  AND ($statuses IS NULL OR list_contains($statuses::VARCHAR[], t.task_status))
  AND ($agent_id IS NULL OR t.assigned_to = $agent_id)
  AND ($task_type IS NULL OR t.task_type = $task_type)
  AND ($priority IS NULL OR t.priority = $priority)
  AND ($created_after IS NULL OR t.created_at > $created_after)
ORDER BY t.priority_rank, t.created_at, t.id
LIMIT $limit OFFSET $offset;

-- name: tasks_stale
-- Assigned or running tasks whose lease ran out before $now (columns as tasks_lock).
SELECT task_id, content, task_type, task_status, priority, requirements, dependencies,
       assigned_to, epoch_us(created_at) AS created_at,
       epoch_us(assigned_at) AS assigned_at,
       epoch_us(started_at) AS started_at,
       epoch_us(completed_at) AS completed_at,
       epoch_us(retry_until) AS retry_until,
       epoch_us(lease_until) AS lease_until,
       error_message, retry_count, execution_duration_ms, max_retries, estimated_duration_ms,
       result_task_id, blocked_by, task_batch_id, idempotency_key, success, attempt, name
FROM episodic_events
WHERE task_status IN ('assigned', 'running') AND lease_until < $now
ORDER BY id;

-- name: task_status_counts
SELECT task_status, count(*) AS n FROM episodic_events
WHERE task_id IS NOT NULL GROUP BY task_status;

-- name: dependency_edges
SELECT depends_on, task_id FROM task_dependencies;

-- name: task_nodes
-- Every task as a node of the dependency graph, in queue order.
SELECT task_id, task_status, priority, task_type, name FROM episodic_events
WHERE task_id IS NOT NULL
ORDER BY priority_rank, created_at, id;

-- name: dependents_of
SELECT task_id FROM task_dependencies WHERE depends_on = $task_id ORDER BY task_id;

-- name: task_history
-- A task's history, oldest first: its creation (the task row itself, created in the
-- status kept in context_phase) and then its transition events.
SELECT id AS event_id, timestamp AS at, content FROM (
    SELECT id, timestamp, json_object(
        'from_status', NULL, 'to_status', context_phase, 'agent_id', NULL,
        'detail', CASE WHEN blocked_by IS NOT NULL AND context_phase = 'blocked'
                       THEN 'created blocked by ' || blocked_by ELSE 'created' END)::VARCHAR AS content
    FROM episodic_events WHERE task_id = $task_id
    UNION ALL
    SELECT id, timestamp, content FROM episodic_events
    WHERE context_task = $task_id AND event_type = 'task_transition')
ORDER BY id;

-- name: tasks_frame
-- Task rows for analysis, with the columns of queue order (priority_rank, created_at, id)
-- and unsorted: the caller sorts them (a sort of every column of a million rows takes
-- DuckDB ~1 s; numpy sorts the three keys in milliseconds). The JSON lists come as lists
-- of strings: split where json.dumps wrote them plainly (no backslash), parsed otherwise.
SELECT task_id, name, content, task_type, task_status AS status, priority,
       CASE WHEN requirements IS NULL OR requirements = '[]' THEN []::VARCHAR[]
            WHEN contains(requirements, '\') THEN from_json(requirements, '["VARCHAR"]')
            ELSE string_split(requirements[3:-3], '", "') END AS requirements,
       CASE WHEN dependencies IS NULL OR dependencies = '[]' THEN []::VARCHAR[]
            WHEN contains(dependencies, '\') THEN from_json(dependencies, '["VARCHAR"]')
            ELSE string_split(dependencies[3:-3], '", "') END AS dependencies,
       assigned_to, created_at, assigned_at, started_at, completed_at,
       retry_count, max_retries, retry_until, lease_until, execution_duration_ms,
       estimated_duration_ms, error_message AS error, blocked_by, waiting_on, task_batch_id,
       priority_rank, id
FROM episodic_events
WHERE task_id IS NOT NULL
  AND ($statuses IS NULL OR list_contains($statuses::VARCHAR[], task_status))
  AND ($agent_id IS NULL OR assigned_to = $agent_id);

-- name: transitions_frame
-- Every task's creation and transitions, oldest first (queue state over time), the
-- transition's JSON content taken apart here (its four keys, as the codec writes them).
SELECT id AS event_id, timestamp AS at, task_id, from_status, to_status, agent_id, detail
FROM (
    SELECT id, timestamp, task_id, CAST(NULL AS VARCHAR) AS from_status,
           context_phase AS to_status, CAST(NULL AS VARCHAR) AS agent_id,
           'created' AS detail
    FROM episodic_events WHERE task_id IS NOT NULL
    UNION ALL
    SELECT id, timestamp, context_task, content ->> 'from_status', content ->> 'to_status',
           content ->> 'agent_id', content ->> 'detail'
    FROM episodic_events
    WHERE event_type = 'task_transition')
ORDER BY id;

-- ---------------------------------------------------------------- knowledge graph

-- name: entity_upsert
INSERT INTO graph_entities VALUES ($entity_id, $kind, $name, $properties, $now, $now)
ON CONFLICT (entity_id) DO UPDATE SET properties = excluded.properties, updated_at = excluded.updated_at;

-- name: entity_delete
DELETE FROM graph_entities WHERE entity_id = $entity_id;

-- name: entity_get
SELECT entity_id, kind, name, properties, created_at, updated_at FROM graph_entities
WHERE entity_id = $entity_id;

-- name: entities_all
SELECT entity_id, kind, name, properties, created_at, updated_at FROM graph_entities
ORDER BY entity_id;

-- name: entities_add
-- Entities of one kind without properties (lists of equal length), created if absent and
-- in id order; existing ones are left alone (and, on PostgreSQL, not locked).
INSERT INTO graph_entities
SELECT unnest($entity_ids::VARCHAR[]), $kind::VARCHAR, unnest($names::VARCHAR[]), '{}',
       $now::TIMESTAMPTZ, $now::TIMESTAMPTZ
ORDER BY 1
ON CONFLICT (entity_id) DO NOTHING;

-- name: relations_upsert
-- Relations from one source (lists of equal length, no target twice), added or given
-- their new confidence, in target order.
INSERT INTO graph_relations
SELECT $source_id::VARCHAR, unnest($target_ids::VARCHAR[]), $relation_type::VARCHAR,
       unnest($confidences::FLOAT8[]), $now::TIMESTAMPTZ
ORDER BY 2
ON CONFLICT (source_id, target_id, relation_type) DO UPDATE SET confidence = excluded.confidence;

-- name: relations_delete_from
DELETE FROM graph_relations WHERE source_id = $source_id AND relation_type = $relation_type;

-- name: relations_all
SELECT source_id, target_id, relation_type, confidence FROM graph_relations
ORDER BY source_id, target_id;

-- name: agent_profile
-- What a claim needs to know of an agent: its properties and capabilities.
SELECT e.properties,
       list(r.target_id ORDER BY r.target_id) FILTER (WHERE r.target_id IS NOT NULL) AS targets
FROM graph_entities e
LEFT JOIN graph_relations r ON r.source_id = e.entity_id AND r.relation_type = $relation_type
WHERE e.entity_id = $entity_id
GROUP BY e.properties;

-- ---------------------------------------------------------------- agent figures

-- name: metrics_record
-- Add outcomes to agents' figures, created on first use (lists of equal length), in agent
-- order. Sums are taken wide (HUGEINT) and saturate at $cap, so no figure ever overflows
-- its BIGINT and the agent keeps taking work whatever was recorded.
INSERT INTO agent_metrics
SELECT agent_id, least(sum(completed), $cap), least(sum(failed), $cap),
       least(sum(success_ms), $cap), $now
FROM (SELECT unnest($agent_ids::VARCHAR[]) AS agent_id, unnest($completed::BIGINT[]) AS completed,
             unnest($failed::BIGINT[]) AS failed, unnest($success_ms::BIGINT[]) AS success_ms)
GROUP BY agent_id
ORDER BY agent_id
ON CONFLICT (agent_id) DO UPDATE SET
    total_completed = least(agent_metrics.total_completed::HUGEINT + excluded.total_completed, $cap),
    total_failed = least(agent_metrics.total_failed::HUGEINT + excluded.total_failed, $cap),
    total_success_ms = least(agent_metrics.total_success_ms::HUGEINT + excluded.total_success_ms,
                             $cap),
    last_updated = excluded.last_updated;

-- name: metrics_delete
DELETE FROM agent_metrics WHERE agent_id = $agent_id;

-- name: figures_record
-- Add outcomes to agents' figures and to their figures per skill (task type or
-- capability), in one statement: lists of equal length per table, each row once, in key
-- order (agents first: the global lock order), counts summed and capped by the caller;
-- each sum stops at $cap as in metrics_record. The skills' insert reads the agents'
-- (the DuckDB caveat of tasks_claim_mark).
WITH agent_figures AS (
    INSERT INTO agent_metrics
    SELECT unnest($agent_ids::VARCHAR[]), unnest($agent_completed::BIGINT[]),
           unnest($agent_failed::BIGINT[]), unnest($agent_ms::BIGINT[]), $now
    ON CONFLICT (agent_id) DO UPDATE SET
        total_completed = least(agent_metrics.total_completed::HUGEINT
                                + excluded.total_completed, $cap),
        total_failed = least(agent_metrics.total_failed::HUGEINT + excluded.total_failed,
                             $cap),
        total_success_ms = least(agent_metrics.total_success_ms::HUGEINT
                                 + excluded.total_success_ms, $cap),
        last_updated = excluded.last_updated
    RETURNING agent_id)
INSERT INTO agent_skill_metrics
SELECT unnest($skill_agents::VARCHAR[]), unnest($skill_kinds::VARCHAR[]),
       unnest($skills::VARCHAR[]), unnest($skill_completed::BIGINT[]),
       unnest($skill_failed::BIGINT[]), unnest($skill_ms::BIGINT[]), $now
WHERE (SELECT count(*) FROM agent_figures) >= 0
ON CONFLICT (agent_id, skill_kind, skill) DO UPDATE SET
    completed = least(agent_skill_metrics.completed::HUGEINT + excluded.completed, $cap),
    failed = least(agent_skill_metrics.failed::HUGEINT + excluded.failed, $cap),
    success_ms = least(agent_skill_metrics.success_ms::HUGEINT + excluded.success_ms, $cap),
    last_updated = excluded.last_updated;

-- name: skill_metrics_delete
DELETE FROM agent_skill_metrics WHERE agent_id = $agent_id;

-- name: skill_figures
-- Every agent's outcomes at one skill (the learning router's posterior counts).
SELECT agent_id, completed, failed, success_ms FROM agent_skill_metrics
WHERE skill_kind = $kind AND skill = $skill;

-- name: skill_metrics_frame
SELECT agent_id, skill_kind, skill, completed, failed, success_ms, last_updated
FROM agent_skill_metrics ORDER BY agent_id, skill_kind, skill;

-- name: agent_figures
-- Every agent's recorded outcomes and live load (from the task table).
WITH loads AS (
    SELECT assigned_to AS agent_id, count(*) AS current_load FROM episodic_events
    WHERE task_status IN ('assigned', 'running') AND assigned_to IS NOT NULL
    GROUP BY assigned_to)
SELECT coalesce(m.agent_id, l.agent_id) AS agent_id,
       coalesce(m.total_completed, 0) AS total_completed,
       coalesce(m.total_failed, 0) AS total_failed,
       coalesce(m.total_success_ms, 0) AS total_success_ms,
       m.last_updated,
       coalesce(l.current_load, 0) AS current_load
FROM agent_metrics m FULL OUTER JOIN loads l ON l.agent_id = m.agent_id;

-- name: agent_figures_one
WITH loads AS (
    SELECT count(*) AS current_load FROM episodic_events
    WHERE assigned_to = $agent_id AND task_status IN ('assigned', 'running'))
SELECT coalesce(m.total_completed, 0) AS total_completed,
       coalesce(m.total_failed, 0) AS total_failed,
       coalesce(m.total_success_ms, 0) AS total_success_ms,
       m.last_updated, loads.current_load
FROM loads LEFT JOIN agent_metrics m ON m.agent_id = $agent_id;

-- ---------------------------------------------------------------- routing decisions

-- name: decision_insert
INSERT INTO routing_decisions (decided_at, task_id, requirements, candidates, scores,
    components, selected_agent, weights, reason, source, policy, propensity,
    propensity_method, propensities)
VALUES ($decided_at, $task_id, $requirements, $candidates, $scores, $components,
    $selected_agent, $weights, $reason, $source, $policy, $propensity, $propensity_method,
    $propensities);

-- name: decisions_insert
INSERT INTO routing_decisions BY NAME SELECT * FROM incoming;

-- name: decisions_frame
-- The log oldest first, of one task or of all ($task_id NULL), a page at a time
-- ($limit NULL: to the end). The casts tell PostgreSQL the types of NULLs.
SELECT * FROM routing_decisions
WHERE $task_id::VARCHAR IS NULL OR task_id = $task_id::VARCHAR
ORDER BY decision_id
LIMIT $limit::BIGINT OFFSET $offset::BIGINT;

-- name: decisions_count
-- How many decisions the log holds, of one task or of all ($task_id NULL).
SELECT count(*) FROM routing_decisions
WHERE $task_id::VARCHAR IS NULL OR task_id = $task_id::VARCHAR;

-- ---------------------------------------------------------------- event subscriptions

-- name: subscription_upsert
-- A subscriber's pattern, recorded once (UNIQUE agent_id, event_pattern) and active.
INSERT INTO event_subscriptions (agent_id, event_pattern, pattern_type, is_active,
                                 created_at, trigger_count)
VALUES ($agent_id, $pattern, 'regex', TRUE, $now, 0)
ON CONFLICT (agent_id, event_pattern) DO UPDATE SET is_active = TRUE
RETURNING id;

-- name: subscription_record
-- A closed subscription's deliveries, added to its row.
UPDATE event_subscriptions
SET trigger_count = trigger_count + $delivered::INTEGER, is_active = $active::BOOLEAN,
    last_triggered = coalesce($last_triggered::TIMESTAMPTZ, last_triggered)
WHERE id = $id::BIGINT;

-- name: subscriptions_frame
SELECT id, agent_id, event_pattern, pattern_type, is_active, created_at, last_triggered,
       trigger_count
FROM event_subscriptions ORDER BY id;

-- ---------------------------------------------------------------- audits

-- name: contents_episodic_events
SELECT * FROM episodic_events ORDER BY id;

-- name: contents_task_dependencies
SELECT * FROM task_dependencies ORDER BY task_id, depends_on;

-- name: contents_event_subscriptions
SELECT * FROM event_subscriptions ORDER BY id;

-- name: contents_graph_entities
SELECT * FROM graph_entities ORDER BY entity_id;

-- name: contents_graph_relations
SELECT * FROM graph_relations ORDER BY source_id, target_id, relation_type;

-- name: contents_agent_metrics
SELECT * FROM agent_metrics ORDER BY agent_id;

-- name: contents_agent_skill_metrics
SELECT * FROM agent_skill_metrics ORDER BY agent_id, skill_kind, skill;

-- name: contents_routing_decisions
SELECT * FROM routing_decisions ORDER BY decision_id;

-- name: contents_store_versions
SELECT * FROM store_versions ORDER BY name;

-- ---------------------------------------------------------------- transactions and sessions
-- Run by SQLDatabase.transaction and the backends' connection set-up, with these names as
-- their labels (the tracer sees them; PostgreSQL's error translation reads the label).

-- name: begin
BEGIN

-- name: begin_read_only
-- A DuckDB reader beside this process's writer: its connection could write otherwise.
BEGIN TRANSACTION READ ONLY

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: session_read_only
-- PostgreSQL's (postgres/queries.sql): DuckDB opens a read-only file read-only, and never
-- runs it.
SELECT NULL

-- ---------------------------------------------------------------- the router's read

-- name: routing_read
-- Everything a routing decision reads, in one statement, as rows (kind, agent_id, a, b, c):
-- 0: the agent graph's change counter (a); 1: each agent's outcomes (completed, failed,
-- success_ms); 2: each agent's live load (a, from the task table); 3: with a task type,
-- each agent's outcomes at that type.
SELECT 0 AS kind, CAST(NULL AS TEXT) AS agent_id, version AS a, CAST(0 AS BIGINT) AS b,
       CAST(0 AS BIGINT) AS c
FROM store_versions WHERE name = 'agents'
UNION ALL
SELECT 1, agent_id, total_completed, total_failed, total_success_ms FROM agent_metrics
UNION ALL
SELECT 2, assigned_to, count(*), 0, 0 FROM episodic_events
WHERE task_status IN ('assigned', 'running') AND assigned_to IS NOT NULL
GROUP BY assigned_to
UNION ALL
SELECT 3, agent_id, completed, failed, success_ms FROM agent_skill_metrics
WHERE skill_kind = 'task_type' AND skill = CAST($task_type AS TEXT);
