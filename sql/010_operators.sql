-- 010: what operators read: views over the engine and the Wild Rydes tables (README,
-- "Inspecting Rydes with SQL"), and the indexes that let the dashboard list recent work.

-- The engine's tables as PostgreSQL sees them: dead tuples, when autovacuum last ran, size.
-- Churning tables (messages, message_groups, payloads) must keep n_dead_tup bounded.
CREATE VIEW engine_tables AS
SELECT s.relname AS table_name, s.n_live_tup AS live_rows, s.n_dead_tup AS dead_rows,
       s.last_autovacuum, s.last_autoanalyze, s.autovacuum_count,
       pg_total_relation_size(s.relid) AS total_bytes
FROM pg_stat_user_tables s
WHERE s.schemaname = current_schema()
ORDER BY s.n_dead_tup DESC;

-- The gauges /metrics reads from the database (src/api/ops_metrics.c caches them for a few seconds):
-- Wild Rydes work by state and PostgreSQL's health of the engine's tables. One row per series:
-- the metric name, its label set as Prometheus text ('' for none) and the value.
CREATE FUNCTION rydes_gauges()
RETURNS TABLE (metric text, labels text, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT 'rydes_tasks', format('status="%s"', s), count(t.id)::float8
    FROM unnest(ARRAY['pending', 'processing', 'succeeded', 'failed']) AS s
    LEFT JOIN tasks t ON t.status = s GROUP BY s
    UNION ALL
    SELECT 'rydes_rfqs', format('outcome="%s"', o), count(r.id)::float8
    FROM unnest(ARRAY['running', 'all_answered', 'timeout']) AS o
    LEFT JOIN rfqs r ON coalesce(r.completion_reason, 'running') = o GROUP BY o
    UNION ALL
    SELECT 'rydes_fares', format('status="%s"', s), count(f.id)::float8
    FROM unnest(ARRAY['pending', 'running', 'succeeded', 'failed']) AS s
    LEFT JOIN fares f ON f.status = s GROUP BY s
    UNION ALL
    SELECT 'rydes_fares_needing_operator', '', count(*)::float8 FROM fares WHERE needs_operator
    UNION ALL
    SELECT 'rydes_saga_steps_compensated', '', count(*)::float8
    FROM saga_steps WHERE status = 'compensated'
    UNION ALL
    SELECT 'rydes_pg_dead_rows', format('table="%s"', relname), n_dead_tup::float8
    FROM pg_stat_user_tables WHERE schemaname = current_schema()
    UNION ALL
    SELECT 'rydes_pg_live_rows', format('table="%s"', relname), n_live_tup::float8
    FROM pg_stat_user_tables WHERE schemaname = current_schema()
    UNION ALL
    SELECT 'rydes_pg_last_autovacuum_seconds', format('table="%s"', relname),
           extract(epoch FROM greatest(last_autovacuum, last_vacuum))::float8
    FROM pg_stat_user_tables
    WHERE schemaname = current_schema() AND greatest(last_autovacuum, last_vacuum) IS NOT NULL
    UNION ALL
    SELECT 'rydes_pg_oldest_transaction_seconds', '',
           coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8
    FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL
    UNION ALL
    SELECT 'rydes_pg_xid_age', '', age(datfrozenxid)::float8
    FROM pg_database WHERE datname = current_database()
$$;

-- The dashboard's newest-first lists (GET /tasks, GET /rfqs, GET /fares) page by keyset on
-- (creation time, id), newest first: each reads one index backwards from its cursor instead of
-- sorting the table.
CREATE INDEX tasks_submitted ON tasks (submitted_at, id);
CREATE INDEX rfqs_submitted ON rfqs (submitted_at, id);
CREATE INDEX fares_created ON fares (created_at, id);
