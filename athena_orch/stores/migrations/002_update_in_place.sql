-- Schema version 2: no indexes on low-cardinality task columns.
-- DuckDB runs an UPDATE that sets an indexed column as a DELETE plus an INSERT of the
-- whole row, rewriting every index entry of it: claiming or completing 5,000 tasks took
-- ~0.3 s instead of ~0.01 s. task_status and assigned_to change on every transition;
-- task_type has a handful of values. DuckDB answers filters on all three with a column
-- scan (it uses an ART index only for selective point lookups), so the indexes only
-- cost time on every insert, update and checkpoint.
-- (PostgreSQL updates indexed columns cheaply and uses such indexes: its schema keeps them.)

DROP INDEX IF EXISTS idx_task_status;
DROP INDEX IF EXISTS idx_assigned_to;
DROP INDEX IF EXISTS idx_task_type;
