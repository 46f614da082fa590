-- PostgreSQL versions of the named queries of ../queries.sql that DuckDB's dialect does
-- not share: every other query runs there unchanged. $parameters become psycopg's
-- %(name)s; a parameter that may be NULL is cast, as PostgreSQL must know its type.

-- name: session_setup
SET TimeZone = 'UTC';

-- name: migrations_lock
-- Processes that open the same database at once migrate one after the other.
SELECT pg_advisory_xact_lock(7463922841);

-- name: work_notify
-- Delivered when the transaction commits, to every process listening on the server; the
-- payload names the schema, so databases sharing a server do not wake each other's workers.
SELECT pg_notify('athena_orch_work', current_schema());

-- name: work_listen
LISTEN athena_orch_work;

-- name: tasks_insert
-- New task rows in bulk, streamed with COPY (the frame's columns fill {columns}).
COPY episodic_events ({columns}) FROM STDIN;

-- name: transitions_insert_frame
COPY episodic_events ({columns}) FROM STDIN;

-- name: dependencies_insert
COPY task_dependencies ({columns}) FROM STDIN;

-- name: decisions_insert
COPY routing_decisions ({columns}) FROM STDIN;

-- name: agent_capacity
-- As in DuckDB, and the agent's row stays locked until the transaction ends: claims for
-- one agent queue up here, so the pick that follows (a new snapshot) sees the load the
-- previous claim left, and the agent's capacity holds.
SELECT CASE WHEN (properties::jsonb ->> 'active')::boolean
            THEN (properties::jsonb ->> 'max_concurrent_tasks')::integer ELSE 0 END
FROM graph_entities WHERE entity_id = $agent_key::text
FOR UPDATE;

-- name: tasks_claim_pick
-- As in DuckDB, after agent_capacity locked the agent's row (so this statement's
-- snapshot counts the load the agent's previous claim left), locking the chosen rows
-- with SKIP LOCKED, so claimers for different agents never wait on each other's tasks.
WITH capabilities AS (
    SELECT coalesce(array_agg(target_id), '{}') AS targets FROM graph_relations
    WHERE source_id = $agent_key::text AND relation_type = $relation_type::text),
free AS (
    SELECT greatest(CASE WHEN (properties::jsonb ->> 'active')::boolean
                         THEN (properties::jsonb ->> 'max_concurrent_tasks')::integer ELSE 0 END
                    - (SELECT count(*) FROM episodic_events
                       WHERE assigned_to = $agent_id::text
                         AND task_status IN ('assigned', 'running')), 0) AS slots
    FROM graph_entities WHERE entity_id = $agent_key::text)
SELECT t.id, t.task_id, t.content, t.task_type, t.task_status, t.priority, t.priority_rank,
       t.requirements, t.dependencies, t.assigned_to, t.created_at, t.assigned_at,
       t.started_at, t.completed_at, t.retry_until, t.lease_until, t.error_message,
       t.retry_count, t.execution_duration_ms, t.max_retries, t.estimated_duration_ms,
       t.result_task_id, t.blocked_by, t.task_batch_id, t.idempotency_key, t.success, t.attempt,
       t.name
FROM episodic_events t
WHERE t.task_status = 'pending' AND t.waiting_on = 0
  AND (t.retry_until IS NULL OR t.retry_until <= $now::timestamptz)
  AND ($task_types::text[] IS NULL OR t.task_type = ANY($task_types::text[]))
  AND ARRAY(SELECT $capability_prefix::text || r
            FROM jsonb_array_elements_text(t.requirements::jsonb) r)
      <@ (SELECT targets FROM capabilities)
ORDER BY t.priority_rank, t.created_at, t.id
LIMIT least($limit::bigint, coalesce((SELECT slots FROM free), 0))
FOR UPDATE OF t SKIP LOCKED;

-- name: tasks_claim_mark
WITH logged AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now::timestamptz, 'task_transition',
           json_build_object('from_status', s.from_status, 'to_status', s.to_status,
                             'agent_id', $agent_id::text, 'detail', s.detail)::text,
           s.to_status, t.task_id, s.to_status
    FROM unnest($task_ids::text[]) WITH ORDINALITY AS t(task_id, position),
         (VALUES (1, 'pending', 'assigned', 'claimed'),
                 (2, 'assigned', 'running', 'started')) s(step, from_status, to_status, detail)
    WHERE s.step = 1 OR $status::text = 'running'
    ORDER BY s.step, t.position
    RETURNING id)
UPDATE episodic_events
SET task_status = $status::text, assigned_to = $agent_id::text, assigned_at = $now::timestamptz,
    started_at = CASE WHEN $status::text = 'running' THEN $now::timestamptz END,
    lease_until = $lease_until::timestamptz, attempt = coalesce(attempt, 0) + 1
WHERE task_id = ANY($task_ids::text[]) AND task_status = 'pending'
  AND (SELECT count(*) FROM logged) > 0;

-- name: task_start
WITH started AS (
    UPDATE episodic_events
    SET task_status = 'running', started_at = $now::timestamptz,
        lease_until = $lease_until::timestamptz
    WHERE task_id = $task_id::text AND task_status = 'assigned'
      AND ($agent_id::text IS NULL OR assigned_to = $agent_id::text)
      AND ($attempt::integer IS NULL OR coalesce(attempt, 0) = $attempt::integer)
    RETURNING *),
logged AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now::timestamptz, 'task_transition',
           json_build_object('from_status', 'assigned', 'to_status', 'running',
                             'agent_id', assigned_to, 'detail', 'started')::text,
           'running', task_id, 'running'
    FROM started
    RETURNING id)
SELECT *, (SELECT count(*) FROM logged) AS logged FROM started;

-- name: tasks_lock
-- As in DuckDB, locked until the transaction ends, in one order (no deadlocks).
SELECT id, task_id, content, task_type, task_status, priority, requirements, dependencies,
       assigned_to, created_at, assigned_at, started_at, completed_at, retry_until,
       lease_until, error_message, retry_count, execution_duration_ms, max_retries,
       estimated_duration_ms, result_task_id, blocked_by, task_batch_id, idempotency_key,
       success, attempt, name
FROM episodic_events
WHERE task_id = ANY($task_ids::text[])
ORDER BY id
FOR UPDATE;

-- name: tasks_stale
-- As in DuckDB, locked in id order; rows another process is requeueing are skipped, and
-- a row it requeued meanwhile no longer matches: each stale task is requeued once.
SELECT id, task_id, content, task_type, task_status, priority, requirements, dependencies,
       assigned_to, created_at, assigned_at, started_at, completed_at, retry_until,
       lease_until, error_message, retry_count, execution_duration_ms, max_retries,
       estimated_duration_ms, result_task_id, blocked_by, task_batch_id, idempotency_key,
       success, attempt, name
FROM episodic_events
WHERE task_status IN ('assigned', 'running') AND lease_until < $now::timestamptz
ORDER BY id
FOR UPDATE SKIP LOCKED;

-- Multi-row updates lock their rows in id order first (tasks by id, like tasks_lock), so
-- two transactions touching the same tasks queue up instead of deadlocking.

-- name: tasks_block
UPDATE episodic_events
SET task_status = 'blocked', blocked_by = i.root, error_message = i.reason, outcome = 'blocked'
FROM (SELECT unnest($task_ids::text[]) AS task_id, unnest($roots::text[]) AS root,
             unnest($reasons::text[]) AS reason) i
WHERE episodic_events.task_id = i.task_id AND episodic_events.task_status = 'pending'
  AND episodic_events.id IN (SELECT id FROM episodic_events
                             WHERE task_id = ANY($task_ids::text[]) AND task_status = 'pending'
                             ORDER BY id FOR UPDATE)
RETURNING episodic_events.task_id;

-- name: agent_renew_leases
UPDATE episodic_events SET lease_until = $lease_until::timestamptz
WHERE id IN (SELECT id FROM episodic_events
             WHERE assigned_to = $agent_id::text AND task_status IN ('assigned', 'running')
             ORDER BY id FOR UPDATE)
  AND task_status IN ('assigned', 'running')
RETURNING task_id;

-- name: tasks_complete
-- As in DuckDB, after tasks_lock locked the tasks in id order; the dependents are locked
-- in id order too, then the agents' figures in agent order (the global lock order).
WITH results AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now::timestamptz, 'task_result', r.result, 'success', r.task_id, 'completed'
    FROM unnest($results::text[], $task_ids::text[]) AS r(result, task_id)
    RETURNING context_task AS task_id, id),
logged AS (
    INSERT INTO episodic_events (timestamp, event_type, content, outcome, context_task,
                                 context_phase)
    SELECT $now::timestamptz, 'task_transition',
           json_build_object('from_status', 'running', 'to_status', 'completed',
                             'agent_id', a.agent_id, 'detail', 'completed')::text,
           'completed', a.task_id, 'completed'
    FROM unnest($task_ids::text[], $assignees::text[]) AS a(task_id, agent_id)
    RETURNING id),
waiting AS MATERIALIZED (
    SELECT e.id, d.completed
    FROM episodic_events e
    JOIN (SELECT task_id, count(*) AS completed FROM task_dependencies
          WHERE depends_on = ANY($task_ids::text[]) GROUP BY task_id) d ON d.task_id = e.task_id
    ORDER BY e.id
    FOR UPDATE OF e),
released AS (
    UPDATE episodic_events SET waiting_on = waiting_on - waiting.completed
    FROM waiting WHERE episodic_events.id = waiting.id),
agent_figures AS (
    INSERT INTO agent_metrics
    SELECT f.agent_id, f.completed, 0, f.ms, $now::timestamptz
    FROM unnest($agent_ids::text[], $agent_completed::bigint[], $agent_ms::bigint[])
         AS f(agent_id, completed, ms)
    ON CONFLICT (agent_id) DO UPDATE SET
        total_completed = least(agent_metrics.total_completed::numeric
                                + excluded.total_completed, $cap::bigint),
        total_success_ms = least(agent_metrics.total_success_ms::numeric
                                 + excluded.total_success_ms, $cap::bigint),
        last_updated = excluded.last_updated),
skill_figures AS (
    INSERT INTO agent_skill_metrics
    SELECT f.agent_id, f.kind, f.skill, f.completed, 0, f.ms, $now::timestamptz
    FROM unnest($skill_agents::text[], $skill_kinds::text[], $skills::text[],
                $skill_completed::bigint[], $skill_ms::bigint[])
         AS f(agent_id, kind, skill, completed, ms)
    ON CONFLICT (agent_id, skill_kind, skill) DO UPDATE SET
        completed = least(agent_skill_metrics.completed::numeric + excluded.completed,
                          $cap::bigint),
        success_ms = least(agent_skill_metrics.success_ms::numeric + excluded.success_ms,
                           $cap::bigint),
        last_updated = excluded.last_updated)
UPDATE episodic_events
SET task_status = 'completed', completed_at = $now::timestamptz,
    execution_duration_ms = i.duration_ms, success = TRUE, result_task_id = results.id,
    lease_until = NULL, outcome = 'success'
FROM unnest($task_ids::text[], $durations::bigint[]) AS i(task_id, duration_ms)
JOIN results ON results.task_id = i.task_id
WHERE episodic_events.task_id = i.task_id AND episodic_events.task_status = 'running'
  AND (SELECT count(*) FROM logged) > 0;

-- name: task_states
-- Status and blocking root of the given tasks, held FOR SHARE until the transaction ends:
-- a task created on them sees the state they finish in (completed, failed, cancelled).
SELECT task_id, task_status, blocked_by FROM episodic_events
WHERE task_id = ANY($task_ids::text[])
ORDER BY id
FOR SHARE;

-- name: tasks_query
SELECT t.*, r.content AS result
FROM episodic_events t LEFT JOIN episodic_events r ON r.id = t.result_task_id
WHERE t.task_id IS NOT NULL
  AND ($statuses::text[] IS NULL OR t.task_status = ANY($statuses::text[]))
  AND ($agent_id::text IS NULL OR t.assigned_to = $agent_id::text)
  AND ($task_type::text IS NULL OR t.task_type = $task_type::text)
  AND ($priority::text IS NULL OR t.priority = $priority::text)
  AND ($created_after::timestamptz IS NULL OR t.created_at > $created_after::timestamptz)
ORDER BY t.priority_rank, t.created_at, t.id
LIMIT $limit::bigint OFFSET $offset::bigint;

-- name: task_history
SELECT id AS event_id, timestamp AS at, content FROM (
    SELECT id, timestamp, json_build_object(
        'from_status', NULL, 'to_status', context_phase, 'agent_id', NULL,
        'detail', CASE WHEN blocked_by IS NOT NULL AND context_phase = 'blocked'
                       THEN 'created blocked by ' || blocked_by ELSE 'created' END)::text AS content
    FROM episodic_events WHERE task_id = $task_id::text
    UNION ALL
    SELECT id, timestamp, content FROM episodic_events
    WHERE context_task = $task_id::text AND event_type = 'task_transition') AS h
ORDER BY id;

-- name: tasks_frame
SELECT task_id, name, content, task_type, task_status AS status, priority,
       ARRAY(SELECT json_array_elements_text(coalesce(requirements, '[]')::json))
           AS requirements,
       ARRAY(SELECT json_array_elements_text(coalesce(dependencies, '[]')::json))
           AS dependencies,
       assigned_to, created_at, assigned_at, started_at, completed_at,
       retry_count, max_retries, retry_until, lease_until, execution_duration_ms,
       estimated_duration_ms, error_message AS error, blocked_by, waiting_on, task_batch_id,
       priority_rank, id
FROM episodic_events
WHERE task_id IS NOT NULL
  AND ($statuses::text[] IS NULL OR task_status = ANY($statuses::text[]))
  AND ($agent_id::text IS NULL OR assigned_to = $agent_id::text);

-- name: transitions_frame
SELECT id AS event_id, timestamp AS at, task_id, from_status, to_status, agent_id, detail
FROM (
    SELECT id, timestamp, task_id, NULL::text AS from_status, context_phase AS to_status,
           NULL::text AS agent_id, 'created'::text AS detail
    FROM episodic_events WHERE task_id IS NOT NULL
    UNION ALL
    SELECT id, timestamp, context_task, content::json ->> 'from_status',
           content::json ->> 'to_status', content::json ->> 'agent_id',
           content::json ->> 'detail'
    FROM episodic_events
    WHERE event_type = 'task_transition') AS h
ORDER BY id;

-- name: agent_profile
SELECT e.properties,
       array_agg(r.target_id ORDER BY r.target_id) FILTER (WHERE r.target_id IS NOT NULL) AS targets
FROM graph_entities e
LEFT JOIN graph_relations r ON r.source_id = e.entity_id AND r.relation_type = $relation_type::text
WHERE e.entity_id = $entity_id::text
GROUP BY e.properties;

-- name: metrics_record
-- As in DuckDB, wide sums in numeric; agents' rows are locked in id order.
INSERT INTO agent_metrics
SELECT agent_id, least(sum(completed), $cap::bigint), least(sum(failed), $cap::bigint),
       least(sum(success_ms), $cap::bigint), $now::timestamptz
FROM (SELECT unnest($agent_ids::text[]) AS agent_id, unnest($completed::bigint[]) AS completed,
             unnest($failed::bigint[]) AS failed, unnest($success_ms::bigint[]) AS success_ms) AS o
GROUP BY agent_id
ORDER BY agent_id
ON CONFLICT (agent_id) DO UPDATE SET
    total_completed = least(agent_metrics.total_completed::numeric + excluded.total_completed,
                            $cap::bigint),
    total_failed = least(agent_metrics.total_failed::numeric + excluded.total_failed,
                         $cap::bigint),
    total_success_ms = least(agent_metrics.total_success_ms::numeric + excluded.total_success_ms,
                             $cap::bigint),
    last_updated = excluded.last_updated;

-- name: figures_record
-- As in DuckDB, wide sums in numeric; agents' rows first, then their skills', in key order.
WITH agent_figures AS (
    INSERT INTO agent_metrics
    SELECT f.agent_id, f.completed, f.failed, f.ms, $now::timestamptz
    FROM unnest($agent_ids::text[], $agent_completed::bigint[], $agent_failed::bigint[],
                $agent_ms::bigint[]) AS f(agent_id, completed, failed, ms)
    ON CONFLICT (agent_id) DO UPDATE SET
        total_completed = least(agent_metrics.total_completed::numeric
                                + excluded.total_completed, $cap::bigint),
        total_failed = least(agent_metrics.total_failed::numeric + excluded.total_failed,
                             $cap::bigint),
        total_success_ms = least(agent_metrics.total_success_ms::numeric
                                 + excluded.total_success_ms, $cap::bigint),
        last_updated = excluded.last_updated
    RETURNING agent_id)
INSERT INTO agent_skill_metrics
SELECT f.agent_id, f.kind, f.skill, f.completed, f.failed, f.ms, $now::timestamptz
FROM unnest($skill_agents::text[], $skill_kinds::text[], $skills::text[],
            $skill_completed::bigint[], $skill_failed::bigint[], $skill_ms::bigint[])
     AS f(agent_id, kind, skill, completed, failed, ms)
WHERE (SELECT count(*) FROM agent_figures) >= 0
ON CONFLICT (agent_id, skill_kind, skill) DO UPDATE SET
    completed = least(agent_skill_metrics.completed::numeric + excluded.completed,
                      $cap::bigint),
    failed = least(agent_skill_metrics.failed::numeric + excluded.failed, $cap::bigint),
    success_ms = least(agent_skill_metrics.success_ms::numeric + excluded.success_ms,
                       $cap::bigint),
    last_updated = excluded.last_updated;

-- name: idempotency_keys_lock
-- A transaction-long advisory lock per key, taken in one order (no deadlocks): a second
-- writer of the same key waits, then its next statement sees the first one's task.
SELECT count(pg_advisory_xact_lock(h)) FROM (
    SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($keys::text[]) AS k ORDER BY h) AS keys;

-- ---------------------------------------------------------------- transactions and sessions

-- name: session_read_only
-- Each pooled connection of a read-only PostgresDatabase: its transactions cannot write.
SET default_transaction_read_only = on;
